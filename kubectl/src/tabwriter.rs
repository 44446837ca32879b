//! Go's `text/tabwriter` column algorithm, which kubectl's tables (`minwidth 6, padding 3`)
//! and `describe` (`padding 2`) go through: tab-terminated cells of consecutive lines form
//! a column block padded to its widest cell; the last cell of a line is never padded.

/// Aligns `text` (cells separated by `\t`, lines by `\n`).
pub fn format(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    block(&lines, 0, lines.len(), &mut widths, minwidth, padding, &mut out);
    // `split` gives one empty line after a trailing newline; it adds nothing.
    if out.ends_with('\n') && !text.ends_with('\n') {
        out.pop();
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut w = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(w);
        block(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        let mut text = String::new();
        for (j, cell) in line.iter().enumerate() {
            text.push_str(cell);
            if j + 1 < line.len() && j < widths.len() {
                text.extend(std::iter::repeat_n(' ', widths[j].saturating_sub(width(cell))));
            }
        }
        out.push_str(&text);
        // The last line of the text has no newline of its own.
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_align_like_go() {
        let text = "Name:\tweb\nNamespace:\tdefault\nPod Template:\n  Labels:\tapp=web\n  Containers:\n";
        assert_eq!(
            format(text, 0, 2),
            "Name:       web\nNamespace:  default\nPod Template:\n  Labels:  app=web\n  Containers:\n"
        );
        assert_eq!(format("A\tB\nlonger\tC\n", 6, 3), "A        B\nlonger   C\n");
    }
}
