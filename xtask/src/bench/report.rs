//! The benchmark report: Markdown tables and notes, printed as they come and
//! written to a file at the end (pasted into docs/performance.md).

use std::{fmt::Write as _, fs, path::Path};

use anyhow::Result;

/// Accumulated Markdown.
#[derive(Default)]
pub struct Report {
    text: String,
}

impl Report {
    /// Adds a table.
    pub fn table(&mut self, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
        let mut t = format!(
            "\n### {title}\n\n| {} |\n|{}\n",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for row in rows {
            let _ = writeln!(t, "| {} |", row.join(" | "));
        }
        print!("{t}");
        self.text.push_str(&t);
    }

    /// Adds a paragraph.
    pub fn note(&mut self, text: &str) {
        let t = format!("\n{text}\n");
        print!("{t}");
        self.text.push_str(&t);
    }

    /// Writes everything to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        fs::write(path, &self.text)?;
        Ok(())
    }
}
