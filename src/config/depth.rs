//! A cheap look at the text before any YAML parser sees it, in one pass: how deeply it
//! nests, and whether it has a tag. The parsers' cost grows with the square of the nesting
//! depth (80 KB of `[[[[` took 9 s), and multiwan's settings are never more than six levels
//! deep, so anything deeper than [`MAX_DEPTH`] is refused before parsing. Tags (`!custom`,
//! `!!python/object/apply:...`) are refused too: serde drops some of them silently, and a
//! value that means something other than it says has no place in a router's config.

/// Far deeper than any setting (`port_forwards[].to[].port` is the deepest).
pub const MAX_DEPTH: usize = 32;

/// What the scan found first, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    TooDeep {
        line: usize,
        column: usize,
        depth: usize,
    },
    Tag {
        line: usize,
        column: usize,
        tag: String,
    },
}

/// The first place the text nests deeper than `max` or carries a tag.
pub fn scan(text: &str, max: usize) -> Option<Finding> {
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
            return Some(Finding::TooDeep {
                line: n + 1,
                column: indent + 1,
                depth: base + flow,
            });
        }
        let offset = line.len() - rest.len();
        if let Some((col, found)) = flow_depth(rest, &mut flow, base, max) {
            let (line, column) = (n + 1, offset + col + 1);
            return Some(match found {
                Seen::Depth(depth) => Finding::TooDeep {
                    line,
                    column,
                    depth,
                },
                Seen::Tag => Finding::Tag {
                    line,
                    column,
                    tag: rest[col..]
                        .split([' ', ',', ']', '}'])
                        .next()
                        .unwrap_or("!")
                        .to_string(),
                },
            });
        }
    }
    None
}

/// Where a depth is in the text.
#[cfg(test)]
fn too_deep(text: &str, max: usize) -> Option<(usize, usize, usize)> {
    match scan(text, max)? {
        Finding::TooDeep {
            line,
            column,
            depth,
        } => Some((line, column, depth)),
        Finding::Tag { .. } => None,
    }
}

enum Seen {
    Depth(usize),
    Tag,
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

/// Follows `[`/`{` and `]`/`}` outside quotes and comments; the column (0-based) where
/// `base + flow` first exceeds `max`, or where a tag starts: a `!` that begins a value
/// (after `:`, `-`, `,`, `[`, `{`, `?` and a space, or first on the line).
fn flow_depth(line: &str, flow: &mut usize, base: usize, max: usize) -> Option<(usize, Seen)> {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    // The last character outside quotes that was not a space; ' ' at the line's start.
    let mut last = ' ';
    for (col, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if previous != '\\' => {}
            (Some(q), c) if c == q && !(q == '"' && previous == '\\') => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous == ' ' => return None,
            (None, '!')
                if matches!(last, ' ' | ':' | '-' | ',' | '[' | '{' | '?')
                    && (previous == ' ' || matches!(previous, ',' | '[' | '{')) =>
            {
                return Some((col, Seen::Tag));
            }
            (None, '[' | '{') => {
                *flow += 1;
                if base + *flow > max {
                    return Some((col, Seen::Depth(base + *flow)));
                }
            }
            (None, ']' | '}') => *flow = flow.saturating_sub(1),
            _ => {}
        }
        if quote.is_none() && c != ' ' {
            last = c;
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
    fn finds_tags_that_start_a_value_but_not_a_bang_inside_one() {
        let tag = |t: &str| match scan(t, 32) {
            Some(Finding::Tag { line, column, tag }) => Some((line, column, tag)),
            _ => None,
        };
        assert_eq!(tag("a: !custom x\n"), Some((1, 4, "!custom".into())));
        assert_eq!(
            tag("a:\n  - !!python/object/apply:os.system [x]\n"),
            Some((2, 5, "!!python/object/apply:os.system".into()))
        );
        assert_eq!(tag("a: [1, !x 2]\n").map(|t| t.1), Some(8));
        assert_eq!(tag("!top\na: 1\n").map(|t| t.1), Some(1));
        assert_eq!(tag("a: \"!x\"\nb: hello !world\nc: x # !y\n"), None);
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
