//! Changed regions: bounding boxes of clusters of counted pixels, for the review UI and alerts.
//!
//! Policy: the canvas is cut into 16×16 cells and each cell keeps the tight bounding box of its
//! counted pixels. Non-empty cells that touch (including diagonally) form one region, whose box
//! is the union of their tight boxes. So changes closer than 16 px always end up in the same
//! region and changes 32 px or more apart never do (between, it depends on cell alignment).
//! When that yields more than [`MAX_REGIONS`] regions, the grid is coarsened (cells doubled in
//! size, boxes kept tight) until it does not, so the list stays short and a noisy page shows up
//! as a few large boxes rather than thousands of small ones. Regions are sorted top to bottom,
//! then left to right.

use super::Region;

/// Side of a cell in pixels.
pub(crate) const CELL: u32 = 16;

/// Upper bound on the number of regions reported.
pub const MAX_REGIONS: usize = 50;

/// Inclusive pixel bounding box; empty when `x0 > x1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bbox {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl Bbox {
    const EMPTY: Bbox = Bbox { x0: u32::MAX, y0: u32::MAX, x1: 0, y1: 0 };

    fn is_empty(&self) -> bool {
        self.x0 > self.x1
    }

    fn union(&mut self, o: &Bbox) {
        self.x0 = self.x0.min(o.x0);
        self.y0 = self.y0.min(o.y0);
        self.x1 = self.x1.max(o.x1);
        self.y1 = self.y1.max(o.y1);
    }
}

/// Grid of cells over the canvas, filled by the diff loop.
pub(crate) struct CellGrid {
    pub cell: u32,
    cols: usize,
    rows: usize,
    boxes: Vec<Bbox>,
}

/// A horizontal slice of the grid (whole cell rows), owned by one band of the diff loop.
pub(crate) struct CellRows<'a> {
    /// log2 of the cell size (always a power of two): marking a pixel is on the hot path of a
    /// fully different pair, where a division per pixel cost 14 % of the loop.
    shift: u32,
    cols: usize,
    /// First cell row of this slice.
    row0: usize,
    boxes: &'a mut [Bbox],
}

impl CellGrid {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        let cols = width.div_ceil(CELL as usize);
        let rows = height.div_ceil(CELL as usize);
        CellGrid { cell: CELL, cols, rows, boxes: vec![Bbox::EMPTY; cols * rows] }
    }

    pub(crate) fn rows_mut(&mut self, r0: usize, r1: usize) -> CellRows<'_> {
        debug_assert!(self.cell.is_power_of_two());
        CellRows {
            shift: self.cell.trailing_zeros(),
            cols: self.cols,
            row0: r0,
            boxes: &mut self.boxes[r0 * self.cols..r1 * self.cols],
        }
    }

    /// The grid with cells twice as large, boxes merged.
    fn coarsen(&self) -> CellGrid {
        let cols = self.cols.div_ceil(2);
        let rows = self.rows.div_ceil(2);
        let mut boxes = vec![Bbox::EMPTY; cols * rows];
        for r in 0..self.rows {
            for c in 0..self.cols {
                let b = &self.boxes[r * self.cols + c];
                if !b.is_empty() {
                    boxes[(r / 2) * cols + c / 2].union(b);
                }
            }
        }
        CellGrid { cell: self.cell * 2, cols, rows, boxes }
    }

    /// Bounding boxes of 8-connected groups of non-empty cells.
    fn components(&self) -> Vec<Bbox> {
        let mut seen = vec![false; self.boxes.len()];
        let mut stack = Vec::new();
        let mut out = Vec::new();
        for start in 0..self.boxes.len() {
            if seen[start] || self.boxes[start].is_empty() {
                continue;
            }
            seen[start] = true;
            stack.push(start);
            let mut acc = Bbox::EMPTY;
            while let Some(k) = stack.pop() {
                acc.union(&self.boxes[k]);
                let (r, c) = (k / self.cols, k % self.cols);
                for nr in r.saturating_sub(1)..=(r + 1).min(self.rows - 1) {
                    for nc in c.saturating_sub(1)..=(c + 1).min(self.cols - 1) {
                        let n = nr * self.cols + nc;
                        if !seen[n] && !self.boxes[n].is_empty() {
                            seen[n] = true;
                            stack.push(n);
                        }
                    }
                }
            }
            out.push(acc);
        }
        out
    }

    /// At most [`MAX_REGIONS`] regions, sorted by (y, x).
    pub(crate) fn regions(&self) -> Vec<Region> {
        let mut coarser: Option<CellGrid> = None;
        let comps = loop {
            let grid = coarser.as_ref().unwrap_or(self);
            let comps = grid.components();
            if comps.len() <= MAX_REGIONS {
                break comps;
            }
            coarser = Some(grid.coarsen());
        };
        let mut regions: Vec<Region> = comps
            .into_iter()
            .map(|b| Region { x: b.x0, y: b.y0, width: b.x1 - b.x0 + 1, height: b.y1 - b.y0 + 1 })
            .collect();
        regions.sort_unstable_by_key(|r| (r.y, r.x, r.height, r.width));
        regions
    }
}

impl<'a> CellRows<'a> {
    /// Splits off the first `n` cell rows.
    pub(crate) fn split_at(self, n: usize) -> (CellRows<'a>, CellRows<'a>) {
        let (head, tail) = self.boxes.split_at_mut(n * self.cols);
        (
            CellRows { shift: self.shift, cols: self.cols, row0: self.row0, boxes: head },
            CellRows { shift: self.shift, cols: self.cols, row0: self.row0 + n, boxes: tail },
        )
    }

    #[inline]
    pub(crate) fn mark(&mut self, x: usize, y: usize) {
        let k = ((y >> self.shift) - self.row0) * self.cols + (x >> self.shift);
        let b = &mut self.boxes[k];
        let (x, y) = (x as u32, y as u32);
        b.x0 = b.x0.min(x);
        b.y0 = b.y0.min(y);
        b.x1 = b.x1.max(x);
        b.y1 = b.y1.max(y);
    }

    /// Marks pixels `[s, e)` of row `y`.
    pub(crate) fn mark_span(&mut self, y: usize, s: usize, e: usize) {
        let mut x = s;
        while x < e {
            let cell_end = (((x >> self.shift) + 1) << self.shift).min(e);
            self.mark(x, y);
            self.mark(cell_end - 1, y);
            x = cell_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid_with(width: usize, height: usize, points: &[(usize, usize)]) -> CellGrid {
        let mut g = CellGrid::new(width, height);
        let rows = g.rows;
        let mut cells = g.rows_mut(0, rows);
        for &(x, y) in points {
            cells.mark(x, y);
        }
        g
    }

    fn r(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region { x, y, width, height }
    }

    #[test]
    fn no_changes_no_regions() {
        assert!(grid_with(100, 100, &[]).regions().is_empty());
    }

    #[test]
    fn boxes_are_tight_not_cell_aligned() {
        let g = grid_with(100, 100, &[(5, 7), (9, 3)]);
        assert_eq!(g.regions(), vec![r(5, 3, 5, 5)]);
    }

    #[test]
    fn nearby_changes_merge_across_cells_and_distant_ones_do_not() {
        // (15, 10) and (20, 25) are in diagonal neighbour cells; (70, 10) is cells away, and so
        // is (20, 50) from (20, 25) (cell rows 1 and 3).
        let g = grid_with(200, 100, &[(15, 10), (20, 25), (70, 10), (20, 50)]);
        assert_eq!(g.regions(), vec![r(15, 10, 6, 16), r(70, 10, 1, 1), r(20, 50, 1, 1)]);
    }

    #[test]
    fn diagonal_neighbours_merge() {
        let g = grid_with(100, 100, &[(15, 15), (16, 16)]);
        assert_eq!(g.regions(), vec![r(15, 15, 2, 2)]);
    }

    #[test]
    fn sorted_top_to_bottom_then_left_to_right() {
        let g = grid_with(300, 300, &[(200, 5), (10, 100), (100, 5)]);
        let got: Vec<_> = g.regions().iter().map(|r| (r.x, r.y)).collect();
        assert_eq!(got, vec![(100, 5), (200, 5), (10, 100)]);
    }

    #[test]
    fn many_scattered_changes_are_merged_down_to_the_cap() {
        // One changed pixel every 40 px on a 2000x2000 canvas: 2500 isolated clusters.
        let points: Vec<_> = (0..50).flat_map(|i| (0..50).map(move |j| (i * 40 + 3, j * 40 + 3))).collect();
        let g = grid_with(2000, 2000, &points);
        assert_eq!(g.components().len(), 2500);
        let regions = g.regions();
        assert!(!regions.is_empty() && regions.len() <= MAX_REGIONS, "{}", regions.len());
        // Every changed pixel is still inside some region.
        for &(x, y) in &points {
            let (x, y) = (x as u32, y as u32);
            assert!(regions.iter().any(|r| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height));
        }
    }

    #[test]
    fn span_marking_covers_the_whole_span() {
        let mut g = CellGrid::new(100, 40);
        let rows = g.rows;
        let mut cells = g.rows_mut(0, rows);
        for y in 36..40 {
            cells.mark_span(y, 0, 100);
        }
        assert_eq!(g.regions(), vec![r(0, 36, 100, 4)]);
    }

    #[test]
    fn split_rows_address_their_own_cells() {
        let mut g = CellGrid::new(64, 64);
        let rows = g.rows;
        let (mut top, mut bottom) = g.rows_mut(0, rows).split_at(2);
        top.mark(1, 1);
        bottom.mark(60, 63);
        assert_eq!(g.regions(), vec![r(1, 1, 1, 1), r(60, 63, 1, 1)]);
    }
}
