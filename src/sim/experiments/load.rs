//! `load`: not written yet.

use super::{Options, Table};

pub fn run(_opts: &Options) -> Table {
    Table {
        title: "load".into(),
        params: Vec::new(),
        columns: Vec::new(),
        rows: Vec::new(),
        reference: Vec::new(),
        figure: None,
    }
}
