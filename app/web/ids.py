"""Component ids of the dashboard, one constant each, so pages, callbacks and tests agree."""

from __future__ import annotations

# -- shell ---------------------------------------------------------------------------------
NAV = "nav"
RUNS_LIVE = "runs-live"  # the runs page's "Live refresh" switch
RUNS_TICK = "runs-tick"  # its dcc.Interval
RUNS_LIVE_STATE = "runs-live-state"  # "updating every 5 s" / "paused" / nothing running
RUN_LIVE = "run-live"  # the run page's "Live refresh" switch
RUN_TICK = "run-tick"  # its dcc.Interval

# -- experiments page ----------------------------------------------------------------------
EXP_GRID = "exp-grid"
EXP_OPEN = "exp-open"
EXP_SELECTION = "exp-selection"
EXP_NAV = "exp-nav"

# -- runs page -----------------------------------------------------------------------------
RUNS_GRID = "runs-grid"
RUNS_SEARCH = "runs-search"
RUNS_SEARCH_GO = "runs-search-go"
RUNS_SEARCH_CLEAR = "runs-search-clear"
RUNS_SEARCH_ERROR = "runs-search-error"
RUNS_SEARCH_DESCRIBE = "runs-search-describe"
RUNS_STATE = "runs-state"
RUNS_TIME = "runs-time"
RUNS_TIME_RANGE = "runs-time-range"
RUNS_MODELS = "runs-models"
RUNS_COLUMNS = "runs-columns"
RUNS_QUERY = "runs-query"  # dcc.Store: the typed query the grid pages through
RUNS_SORT = "runs-sort"  # dcc.Store: the grid's current sort model
RUNS_URL = "runs-url"  # dcc.Store: the view's query string, mirrored into the address bar
RUNS_URL_APPLIED = "runs-url-applied"  # sink of the clientside URL updater
RUNS_EXPANDED = "runs-expanded"  # dcc.Store: the nested-run parents the user opened (also in the URL)
RUNS_RUNNING = "runs-running"  # dcc.Store: True while a shown run is RUNNING
RUNS_PURGE_SINK = "runs-purge-sink"
RUNS_SELECTION_BAR = "runs-selection-bar"
RUNS_CLEAR_SELECTION = "runs-clear-selection"
RUNS_TIME_BOX = "runs-time-box"
RUNS_COUNT = "runs-count"
RUNS_EMPTY = "runs-empty"
RUNS_SELECTED = "runs-selected"
RUNS_SELECT_ALL = "runs-select-all"
RUNS_ALL_MATCHING = "runs-all-matching"  # dcc.Store: True when every matching run is selected
RUNS_COMPARE = "runs-compare"
RUNS_DELETE = "runs-delete"
RUNS_RESTORE = "runs-restore"
RUNS_CSV = "runs-csv"
RUNS_DOWNLOAD = "runs-download"
RUNS_MESSAGE = "runs-message"
RUNS_NAV = "runs-nav"
RUNS_CHANGED = "runs-changed"  # dcc.Store: bumped after a mutation, so the grid reloads
RUNS_CHARTS_TOGGLE = "runs-charts-toggle"  # shows / hides the runs page's Charts view
RUNS_CHARTS_PANEL = "runs-charts-panel"
RUNS_CHARTS_RUNS = "runs-charts-runs"  # dcc.Store: the run ids the Charts view draws
RUNS_CHARTS_NOTE = "runs-charts-note"
RUNS_CHARTS_KEY = "runs-charts-key"
RUNS_CHARTS_GROUP = "runs-charts-group"
RUNS_CHARTS_SPREAD = "runs-charts-spread"
RUNS_CHARTS_X = "runs-charts-x"
RUNS_CHARTS_GRAPH = "runs-charts-graph"
CONFIRM = "runs-confirm"
CONFIRM_TEXT = "runs-confirm-text"
CONFIRM_DESCENDANTS = "runs-confirm-descendants"
CONFIRM_OK = "runs-confirm-ok"
CONFIRM_CANCEL = "runs-confirm-cancel"

# -- run page ------------------------------------------------------------------------------
RUN_ID = "run-id"  # dcc.Store with the page's run id
RUN_NAME = "run-name"
RUN_STATUS = "run-status"  # the header's status pill (live while the run is RUNNING)
RUN_RENAME = "run-rename"
RUN_RENAME_BOX = "run-rename-box"
RUN_RENAME_INPUT = "run-rename-input"
RUN_RENAME_SAVE = "run-rename-save"
RUN_RENAME_CANCEL = "run-rename-cancel"
RUN_MESSAGE = "run-message"
RUN_RESTORE = "run-restore"
RUN_DELETED = "run-deleted"
RUN_NOTES = "run-notes"
RUN_NOTES_EDIT = "run-notes-edit"
RUN_NOTES_BOX = "run-notes-box"
RUN_NOTES_INPUT = "run-notes-input"
RUN_NOTES_SAVE = "run-notes-save"
RUN_NOTES_CANCEL = "run-notes-cancel"
RUN_CHARTS = "run-charts"
RUN_CHART = "run-chart"  # pattern-matching type: {"type": RUN_CHART, "key": <metric>}
RUN_X_AXIS = "run-x-axis"
RUN_SMOOTHING = "run-smoothing"
RUN_LOG_Y = "run-log-y"
RUN_BAND = "run-band"  # the charts' "min-max band" switch
RUN_SERIES_STATE = "run-series-state"  # dcc.Store: per chart, what live refresh has drawn so far
RUN_TAGS = "run-tags"
RUN_TAG_KEY = "run-tag-key"
RUN_TAG_VALUE = "run-tag-value"
RUN_TAG_SET = "run-tag-set"
RUN_TAG_EDIT = "run-tag-edit"  # pattern-matching type: {"type": RUN_TAG_EDIT, "key": ...}
RUN_TAG_DELETE = "run-tag-delete"  # pattern-matching type
RUN_ARTIFACT_FILE = "run-artifact-file"  # pattern-matching type: {"type": ..., "path": ...}
RUN_ARTIFACT_PREVIEW = "run-artifact-preview"
RUN_REPRO_SCRIPT = "run-repro-script"
RUN_REPRO_DOWNLOAD = "run-repro-download"

# -- compare page --------------------------------------------------------------------------
CMP_RUNS = "cmp-runs"  # dcc.Store with the run ids compared
CMP_DIFF = "cmp-diff"
CMP_NOTICE = "cmp-notice"  # runs requested but not shown (unknown ids, over the limit)
CMP_DETAILS = "cmp-details"
CMP_PARAMS = "cmp-params"
CMP_METRICS = "cmp-metrics"
CMP_PLOT = "cmp-plot"
CMP_PLOT_TABS = "cmp-plot-tabs"  # the plots, one tab each: only the chosen tab is drawn
CMP_PAR_DIMS = "cmp-par-dims"
CMP_PAR_COLOR = "cmp-par-color"
CMP_SC_X = "cmp-sc-x"
CMP_SC_Y = "cmp-sc-y"
CMP_CT_X = "cmp-ct-x"
CMP_CT_Y = "cmp-ct-y"
CMP_CT_Z = "cmp-ct-z"
CMP_CURVE_KEY = "cmp-curve-key"
CMP_X_AXIS = "cmp-x-axis"
CMP_SMOOTHING = "cmp-smoothing"
CMP_LOG_Y = "cmp-log-y"
CMP_BAND = "cmp-band"
CMP_GROUP = "cmp-group"  # group curves by this param or tag
CMP_SPREAD = "cmp-spread"  # the grouped curves' band: min-max, std or none

# -- shell ---------------------------------------------------------------------------------
DAMAGE_BANNER = "damage-banner"  # "N damaged files skipped: ..." above every page
DAMAGE_SLOT = "damage-slot"  # where the banner goes (kept up to date by a callback)
DAMAGE_TICK = "damage-tick"  # its dcc.Interval
DAMAGE_SHOWN = "damage-shown"  # dcc.Store: the damaged files the banner shows


# -- user text inside pattern-matching ids -----------------------------------------------------
# A tag key or an artifact path inside a component id travels to the browser and back as part
# of a JSON prop id; non-ASCII, quotes, dots and braces did not always come back the same. Ids
# carry an ASCII token instead (base64url of the UTF-8 text), decoded on the server.
def encode_key(text: str) -> str:
    """An ASCII token for ``text`` to put in a pattern-matching id."""
    import base64

    return "k" + base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_key(token: object) -> str | None:
    """The text of an ``encode_key`` token, or None for anything else (a forged id)."""
    import base64
    import binascii

    if not isinstance(token, str) or not token.startswith("k"):
        return None
    body = token[1:]
    try:
        padded = (body + "=" * (-len(body) % 4)).encode("ascii")
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64url, not UTF-8, not ASCII
        return None
