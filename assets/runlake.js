/* runlake dashboard: AG Grid cell renderers and clientside callbacks.
   Renderers build elements with React (text children only: user text is never HTML). */
(function () {
  "use strict";
  var React = window.React;

  function navigate(event, href) {
    // Same as dcc.Link: client-side navigation, except for modified clicks (new tab etc.).
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || event.button !== 0) { return; }
    event.preventDefault();
    window.history.pushState({}, "", href);
    window.dispatchEvent(new CustomEvent("_dashprivate_pushstate"));
    window.scrollTo(0, 0);
  }

  function link(href, text, className, title) {
    return React.createElement("a", {
      href: href, className: className || "cell-link", title: title || undefined,
      onClick: function (e) { navigate(e, href); }
    }, text);
  }

  // Numbers in every grid: the same rule as runlake.app.grid.format_number (a test runs both
  // over one table of cases). Significant digits, trailing zeros trimmed, whole numbers exact
  // with separators, scientific below 0.001 and from a million up.
  function formatNumber(value, digits) {
    digits = digits || 5;
    if (value === null || value === undefined) { return ""; }
    if (typeof value !== "number") { return String(value); }
    if (isNaN(value)) { return ""; }
    if (!isFinite(value)) { return value > 0 ? "∞" : "-∞"; }
    if (value === 0) { return "0"; }
    var whole = Number.isInteger(value);
    var rounded = whole ? value : Number(value.toPrecision(digits));
    var trim = function (text) { return text.indexOf(".") >= 0 ? text.replace(/0+$/, "").replace(/\.$/, "") : text; };
    if (Math.abs(rounded) >= 1e6 || Math.abs(rounded) < 1e-3) {
      var parts = value.toExponential(digits - 1).split("e");
      return trim(parts[0]) + "e" + parseInt(parts[1], 10);
    }
    if (whole || Math.abs(rounded) >= Math.pow(10, digits - 1)) {
      return Math.trunc(rounded).toLocaleString("en-US");
    }
    var decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(rounded))));
    return trim(rounded.toLocaleString("en-US", {minimumFractionDigits: decimals, maximumFractionDigits: decimals}));
  }
  var functions = window.dashAgGridFunctions = window.dashAgGridFunctions || {};
  functions.formatNumber = formatNumber;

  var components = window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {};

  components.RunLink = function (props) {
    var data = props.data;
    if (!data) { return React.createElement("span", {className: "cell-loading"}, "…"); }
    return link("/runs/" + encodeURIComponent(data.run_id), data.start_text || data.run_id, "cell-link run-link",
                "Open run " + data.run_id);
  };

  // The tree column: indentation by depth, a toggle with the count of matching nested runs
  // (it reports {run_id, open} to Dash through the grid's cellRendererData), then the name.
  components.RunName = function (props) {
    var data = props.data;
    if (!data) { return null; }
    var depth = data.nest_depth || 0;
    var count = data.nest_children || 0;
    var open = !!data.nest_open;
    var children = [];
    if (count > 0) {
      children.push(React.createElement("button", {
        key: "t", type: "button", className: "tree-toggle" + (open ? " open" : ""), "aria-expanded": open,
        title: (open ? "Hide" : "Show") + " the " + count + " nested run" + (count === 1 ? "" : "s") + " that match",
        onClick: function (e) { e.stopPropagation(); props.setData({run_id: data.run_id, open: !open}); }
      }, React.createElement("span", {className: "tree-caret"}, open ? "▾" : "▸"), String(count)));
    } else if (data.nest_any) {
      // Keeps names aligned when some rows of the view have toggles.
      children.push(React.createElement("span", {key: "t", className: "tree-spacer"}));
    }
    if (data.parent_run_id && depth === 0) {
      // A nested run whose parent is not in this view shows at the top level, marked.
      children.push(React.createElement("span", {key: "n", className: "nested-mark",
        title: "Nested run of " + data.parent_run_id + " (its parent does not match this view)"}, "↳ "));
    }
    children.push(link("/runs/" + encodeURIComponent(data.run_id), data.run_name || data.run_id.slice(0, 8), "cell-link", null));
    if (data.lifecycle_stage === "deleted") {
      children.push(React.createElement("span", {key: "d", className: "pill pill-deleted"}, "Deleted"));
    }
    return React.createElement("span", {className: "tree-cell", style: {paddingLeft: (depth * 20) + "px"}}, children);
  };

  components.StatusPill = function (props) {
    var status = props.value;
    if (!status) { return null; }
    var cls = {RUNNING: "running", FINISHED: "finished", FAILED: "failed", KILLED: "killed", SCHEDULED: "scheduled"}[status] || "unknown";
    return React.createElement("span", {className: "pill pill-" + cls}, status.charAt(0) + status.slice(1).toLowerCase());
  };

  components.ExperimentLink = function (props) {
    var data = props.data;
    if (!data) { return null; }
    return link("/runs?experiments=" + encodeURIComponent(data.experiment_id), data.name, "cell-link", "Open the runs of " + data.name);
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    runlake: {
      // The infinite cache is dropped (query changed) or refreshed in place (live refresh:
      // keeps scroll position and, through getRowId, the selection).
      reloadGrid: function (query, changed, gridId) {
        if (window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
          window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
            if (api && !api.isDestroyed()) { api.purgeInfiniteCache(); }
          });
        }
        return String(Date.now());
      },
      refreshGrid: function (tick, live, gridId) {
        if (live && live.length && window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
          window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
            if (api && !api.isDestroyed()) { api.refreshInfiniteCache(); }
          });
        }
        return window.dash_clientside.no_update;
      },
      // Expanding or collapsing a parent: reload the loaded blocks in place (scroll and
      // selection stay; the new row count comes with the response).
      refreshRows: function (expanded, gridId) {
        if (window.dash_ag_grid && window.dash_ag_grid.getApiAsync) {
          window.dash_ag_grid.getApiAsync(gridId).then(function (api) {
            if (api && !api.isDestroyed()) { api.refreshInfiniteCache(); }
          });
        }
        return window.dash_clientside.no_update;
      },
      // The view lives in the URL; replaceState changes it without re-rendering the page.
      replaceUrl: function (search) {
        if (typeof search !== "string") { return window.dash_clientside.no_update; }
        var target = window.location.pathname + (search ? "?" + search : "");
        if (target !== window.location.pathname + window.location.search) {
          window.history.replaceState(window.history.state, "", target);
        }
        return search;
      }
    }
  });
})();
