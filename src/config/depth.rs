//! A cheap look at the text before any YAML parser sees it: how deeply it nests. The
//! parsers' cost grows with the square of the nesting depth (80 KB of `[[[[` took 9 s), and
//! multiwan's settings are never more than six levels deep, so anything deeper than
//! [`MAX_DEPTH`] is refused before parsing, in one pass over the text.

/// Far deeper than any setting (`port_forwards[].to[].port` is the deepest).
pub const MAX_DEPTH: usize = 32;

/// Where the text first nests deeper than `max`: 1-based line and column, and the depth.
pub fn too_deep(text: &str, max: usize) -> Option<(usize, usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if flow == 0 {
            while indents.last().is_some_and(|i| *i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let (dashes, rest) = leading_dashes(content);
        let base = indents.len() + dashes;
        if base + flow > max {
            return Some((n + 1, indent + 1, base + flow));
        }
        let offset = line.len() - rest.len();
        if let Some((col, depth)) = flow_depth(rest, &mut flow, base, max) {
            return Some((n + 1, offset + col + 1, depth));
        }
    }
    None
}

/// `- - - x`: each dash opens a sequence item.
fn leading_dashes(mut s: &str) -> (usize, &str) {
    let mut n = 0;
    while let Some(rest) = s.strip_prefix('-') {
        if !(rest.is_empty() || rest.starts_with(' ')) {
            break;
        }
        n += 1;
        s = rest.trim_start_matches(' ');
    }
    (n, s)
}

/// Follows `[`/`{` and `]`/`}` outside quotes and comments; the column (0-based) and depth
/// where `base + flow` first exceeds `max`.
fn flow_depth(line: &str, flow: &mut usize, base: usize, max: usize) -> Option<(usize, usize)> {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (col, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if previous != '\\' => {}
            (Some(q), c) if c == q && !(q == '"' && previous == '\\') => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous == ' ' => return None,
            (None, '[' | '{') => {
                *flow += 1;
                if base + *flow > max {
                    return Some((col, base + *flow));
                }
            }
            (None, ']' | '}') => *flow = flow.saturating_sub(1),
            _ => {}
        }
        previous = if previous == '\\' && c == '\\' {
            ' '
        } else {
            c
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profiles_are_shallow() {
        for text in [
            include_str!("../../profiles/home-dual-wan.yaml"),
            include_str!("../../profiles/branch-office.yaml"),
            include_str!("../../profiles/ha-pair-r1.yaml"),
        ] {
            assert_eq!(too_deep(text, 8), None);
        }
    }

    #[test]
    fn finds_deep_flow_block_and_dash_nesting() {
        let flow = format!("a: {}", "[".repeat(40));
        assert_eq!(too_deep(&flow, 32), Some((1, 35, 33)));
        let mut block = String::new();
        for i in 0..40 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert_eq!(too_deep(&block, 32).map(|(l, _, d)| (l, d)), Some((33, 33)));
        let dashes = format!("x:\n  {}a\n", "- ".repeat(40));
        assert!(too_deep(&dashes, 32).is_some());
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let text = format!(
            "a: \"{}\"\nb: '{}' # {}\nc: [1, [2]]\n",
            "[".repeat(50),
            "{".repeat(50),
            "[".repeat(50)
        );
        assert_eq!(too_deep(&text, 32), None);
    }
}
