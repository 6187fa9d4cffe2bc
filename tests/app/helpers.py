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
            self.grid_id, col_id, inner,
        )

    def sort_by(self, col_id: str) -> None:
        self.duo.find_element(f'{self.root} .ag-header-cell[col-id="{col_id}"] .ag-header-cell-label').click()

    def select(self, index: int) -> None:
        """Tick the selection checkbox of the row at ``row-index`` = index."""
        selector = f'{self.root} .ag-row[row-index="{index}"] [col-id="ag-Grid-SelectionColumn"] input'
        self.duo.wait_for_element(selector).click()


def severe_logs(duo: Any) -> list[dict[str, Any]]:
    """Browser-console errors, minus the ones Chromium logs for a missing favicon."""
    return [entry for entry in duo.get_logs() or [] if "favicon" not in entry.get("message", "")]
