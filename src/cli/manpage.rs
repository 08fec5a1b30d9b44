//! multiwan.yaml(5), made from docs/configuration.md: the reference is written once, in
//! Markdown, and this turns the subset it uses (headings, paragraphs, lists, tables, code
//! blocks, `code` and **bold**) into roff. Pure: text in, text out.

/// The whole page.
pub fn config_page(markdown: &str, version: &str) -> String {
    let mut out = format!(
        ".TH MULTIWAN.YAML 5 \"\" \"multiwan {version}\" \"File Formats\"\n\
         .SH NAME\nmultiwan.yaml \\- configuration of the multiwan multi-WAN router agent\n\
         .SH SYNOPSIS\n/etc/multiwan/multiwan.yaml\n"
    );
    let mut code = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            out.push_str(if code { ".fi\n.RE\n" } else { ".RS 4\n.nf\n" });
            code = !code;
            continue;
        }
        if code {
            out.push_str(&escape_line(line));
            out.push('\n');
            continue;
        }
        block(line, &mut out);
    }
    out.push_str(".SH SEE ALSO\n\\fBmultiwan\\fR(8)\n");
    out
}

/// One line outside code blocks.
fn block(line: &str, out: &mut String) {
    let t = line.trim_end();
    if let Some(h) = t.strip_prefix("# ") {
        // The document's title: the page's DESCRIPTION.
        let _ = h;
        out.push_str(".SH DESCRIPTION\n");
    } else if let Some(h) = t.strip_prefix("## ") {
        out.push_str(&format!(".SH \"{}\"\n", plain(h).to_uppercase()));
    } else if let Some(h) = t.strip_prefix("### ") {
        out.push_str(&format!(".SS \"{}\"\n", plain(h)));
    } else if t.is_empty() {
        out.push_str(".PP\n");
    } else if let Some(item) = t.strip_prefix("- ") {
        out.push_str(".IP \\(bu 2\n");
        out.push_str(&escape_line(&inline(item)));
        out.push('\n');
    } else if t.starts_with('|') {
        // A table row: cells one after another; the separator row goes.
        let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            return;
        }
        out.push_str(".br\n");
        out.push_str(&escape_line(&inline(&cells.join(" \u{2014} "))));
        out.push('\n');
    } else {
        out.push_str(&escape_line(&inline(t.trim_start())));
        out.push('\n');
    }
}

/// `code` and **bold** as bold, backslashes escaped.
fn inline(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    let mut out = String::new();
    let mut bold = false;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let tick = rest.find('`');
        let stars = rest.find("**");
        let (at, len) = match (tick, stars) {
            (Some(t), Some(s)) if s < t => (s, 2),
            (Some(t), _) => (t, 1),
            (None, Some(s)) => (s, 2),
            (None, None) => {
                out.push_str(rest);
                break;
            }
        };
        out.push_str(&rest[..at]);
        out.push_str(if bold { "\\fR" } else { "\\fB" });
        bold = !bold;
        rest = &rest[at + len..];
    }
    if bold {
        out.push_str("\\fR");
    }
    out
}

/// A heading's text without Markdown marks or quotes.
fn plain(text: &str) -> String {
    text.replace(['`', '"'], "").replace("**", "")
}

/// A line roff would read as a request (`.` or `'` first) is protected.
fn escape_line(line: &str) -> String {
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_roff() {
        let md = "# Configuration reference\n\nIntro with `code` and **bold**.\n\n## Top level\n\n### `uplinks[].name`\n- one\n| a | b |\n|---|---|\n| `x` | y |\n```yaml\n.dot: 1\n```\n";
        let page = config_page(md, "0.1.0");
        for want in [
            ".TH MULTIWAN.YAML 5",
            ".SH DESCRIPTION\n",
            "Intro with \\fBcode\\fR and \\fBbold\\fR.\n",
            ".SH \"TOP LEVEL\"\n",
            ".SS \"uplinks[].name\"\n",
            ".IP \\(bu 2\none\n",
            ".br\n\\fBx\\fR \u{2014} y\n",
            ".RS 4\n.nf\n\\&.dot: 1\n.fi\n.RE\n",
        ] {
            assert!(page.contains(want), "{want:?} missing in:\n{page}");
        }
        assert!(!page.contains("|---"), "{page}");
    }

    #[test]
    fn the_real_reference_converts_with_every_key() {
        let page = config_page(include_str!("../../docs/configuration.md"), "0");
        assert!(page.contains(".SS \"uplinks[].probe.standby_interval\""));
        assert!(
            page.contains(".SS \"netfilter.backend\""),
            "netfilter.backend is documented"
        );
    }
}
