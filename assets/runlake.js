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

  var components = window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {};

  components.RunLink = function (props) {
    var data = props.data;
    if (!data) { return React.createElement("span", {className: "cell-loading"}, "…"); }
    return link("/runs/" + encodeURIComponent(data.run_id), data.start_text || data.run_id, "cell-link run-link",
                "Open run " + data.run_id);
  };

  components.RunName = function (props) {
    var data = props.data;
    if (!data) { return null; }
    var children = [];
    if (data.parent_run_id) {
      children.push(React.createElement("span", {key: "n", className: "nested-mark", title: "Nested run of " + data.parent_run_id}, "↳ "));
    }
    children.push(link("/runs/" + encodeURIComponent(data.run_id), data.run_name || data.run_id.slice(0, 8), "cell-link", null));
    if (data.lifecycle_stage === "deleted") {
      children.push(React.createElement("span", {key: "d", className: "pill pill-deleted"}, "Deleted"));
    }
    return React.createElement("span", null, children);
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
