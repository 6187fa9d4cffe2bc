"""Page objects for browser tests: they hide AG Grid's DOM so tests read as behaviour."""

from __future__ import annotations

from typing import Any


class Grid:
    """An AG Grid on the page, by component id."""

    def __init__(self, duo: Any, grid_id: str) -> None:
        self.duo = duo
        self.grid_id = grid_id

    @property
    def root(self) -> str:
        return f"#{self.grid_id}"

    def run_names(self) -> list[str]:
        """The runs grid's names (the link text, without the nested-run mark or the Deleted pill)."""
        return self.column("run_name", "a")

    def column(self, col_id: str, inner: str | None = None) -> list[str]:
        """Texts of a column's cells for the rendered, loaded rows, top to bottom (any pinning);
        with ``inner``, the text of that element inside each cell."""
        return self.duo.driver.execute_script(
            """
            const [grid, col, inner] = arguments;
            const cells = document.querySelectorAll(`#${CSS.escape(grid)} .ag-row[row-index] [col-id="${CSS.escape(col)}"]`);
            const out = [];
            for (const cell of cells) {
              const row = cell.closest('.ag-row');
              if (row.classList.contains('ag-row-loading')) continue;
              const target = inner ? cell.querySelector(inner) : cell;
              out.push([Number(row.getAttribute('row-index')), target ? target.innerText.trim() : '']);
            }
            out.sort((a, b) => a[0] - b[0]);
            return out.map(x => x[1]);
            """,
            self.grid_id,
            col_id,
            inner,
        )

    def _name_cell(self, name: str) -> str:
        """XPath of the run-name cell whose link reads ``name``."""
        return f"//div[@id='{self.grid_id}']//div[@col-id='run_name'][.//a[normalize-space()='{name}']]"

    def toggle_nested(self, name: str) -> None:
        """Click the expand/collapse toggle of the run called ``name``."""
        from selenium.webdriver.common.by import By

        self.duo.driver.find_element(
            By.XPATH, self._name_cell(name) + "//button[contains(@class, 'tree-toggle')]"
        ).click()

    def toggle_text(self, name: str) -> str:
        """The toggle's text of the run called ``name`` ('' when it has none): caret and count."""
        from selenium.webdriver.common.by import By

        found = self.duo.driver.find_elements(
            By.XPATH, self._name_cell(name) + "//button[contains(@class, 'tree-toggle')]"
        )
        return found[0].text.replace("\n", "").strip() if found else ""

    def indent(self, name: str) -> int:
        """Pixels the run called ``name`` is indented by in the tree column."""
        from selenium.webdriver.common.by import By

        cell = self.duo.driver.find_element(By.XPATH, self._name_cell(name) + "//span[contains(@class, 'tree-cell')]")
        return int(float(cell.value_of_css_property("padding-left").replace("px", "") or 0))

    def sort_by(self, col_id: str) -> None:
        self.duo.find_element(f'{self.root} .ag-header-cell[col-id="{col_id}"] .ag-header-cell-label').click()

    def select(self, index: int) -> None:
        """Tick the selection checkbox of the row at ``row-index`` = index."""
        selector = f'{self.root} .ag-row[row-index="{index}"] [col-id="ag-Grid-SelectionColumn"] input'
        self.duo.wait_for_element(selector).click()


def dash_prop(duo: Any, component_id: str, prop: str) -> Any:
    """A component's current prop as the Dash renderer holds it (for props with no DOM, such as
    a ``dcc.Interval``'s ``disabled``)."""
    return duo.driver.execute_script(
        """
        const [id, prop] = arguments;
        const state = window.store.getState();
        const path = state.paths.strs[id];
        if (!path) { return null; }
        let node = state.layout;
        for (const step of path) { node = node[step]; }
        return node.props[prop];
        """,
        component_id,
        prop,
    )


def chart(duo: Any, container: str, title: str | None = None) -> dict[str, Any] | None:
    """The Plotly graph in ``container`` (the one titled ``title``, if given): points in its last
    trace, its traces and its x-axis range."""
    return duo.driver.execute_script(
        """
        const [container, title] = arguments;
        const graphs = [...document.querySelectorAll(`${container} .js-plotly-plot`)];
        const gd = graphs.find(g => !title || (g.layout && g.layout.title && g.layout.title.text === title));
        if (!gd || !gd.data || !gd.data.length) { return null; }
        return {points: gd.data[gd.data.length - 1].x.length, traces: gd.data.length,
                range: gd.layout.xaxis.range, autorange: gd.layout.xaxis.autorange};
        """,
        container,
        title,
    )


def severe_logs(duo: Any) -> list[dict[str, Any]]:
    """Browser-console errors (the app ships its favicon, so none is exempt)."""
    return list(duo.get_logs() or [])


def open_plot_tab(duo, name: str) -> None:
    """Open a compare page plot tab (curves, parallel, scatter, contour): only the chosen tab
    is drawn."""
    from runlake.app.web import ids

    click_centred(duo, duo.wait_for_element(f"#{ids.CMP_PLOT_TABS}-{name}", timeout=20))


# Each compare plot tab and what shows it drawn.
PLOT_TABS_DRAWN = (("parallel", ".parcoords"), ("scatter", ".scatterlayer .trace"), ("contour", ".contourlayer"))


def click_centred(duo, element) -> None:
    """Click an element scrolled to the window's middle: at an edge the page's sticky header
    can cover it."""
    duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()
