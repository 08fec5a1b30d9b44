//! Maps every field path of a YAML document to its line and column.
//!
//! serde stops at the first error and forgets positions once a value is built, yet we must
//! report every problem with `FILE:LINE:COLUMN`. So the text is walked once more with an
//! event parser that keeps positions, and validation looks positions up by field path.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

use super::path::FieldPath;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions of the fields of one document.
#[derive(Debug, Default)]
pub struct Locator {
    positions: HashMap<FieldPath, Position>,
}

impl Locator {
    /// Indexes `text`. A document the parser cannot read yields an empty index: the syntax
    /// error itself is reported by the YAML deserializer, which has its own position.
    pub fn new(text: &str) -> Self {
        let mut walker = Walker::default();
        for item in Parser::new_from_str(text) {
            match item {
                Ok((event, span)) => walker.on_event(event, span),
                Err(_) => break,
            }
        }
        Self {
            positions: walker.positions,
        }
    }

    /// The position of `path`, or of its nearest ancestor that is in the document (a missing
    /// field is reported where its parent starts).
    pub fn find(&self, path: &FieldPath) -> Position {
        let mut cur = Some(path.clone());
        while let Some(p) = cur {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            cur = p.parent();
        }
        Position { line: 1, column: 1 }
    }
}

enum Frame {
    Map {
        path: FieldPath,
        key: Option<String>,
    },
    Seq {
        path: FieldPath,
        next: usize,
    },
    /// A complex mapping key: its content has no path of its own.
    Opaque,
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<FieldPath, Position>,
}

impl Walker {
    fn on_event(&mut self, event: Event<'_>, span: Span) {
        let pos = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut()
                    && key.is_none()
                {
                    let full = path.key(&value);
                    self.positions.insert(full, pos);
                    *key = Some(value.into_owned());
                    return;
                }
                self.node_value(pos);
            }
            Event::Alias(_) => self.node_value(pos),
            Event::MappingStart(..) => {
                let frame = match self.node_path(pos) {
                    Some(path) => Frame::Map { path, key: None },
                    None => Frame::Opaque,
                };
                self.stack.push(frame);
            }
            Event::SequenceStart(..) => {
                let frame = match self.node_path(pos) {
                    Some(path) => Frame::Seq { path, next: 0 },
                    None => Frame::Opaque,
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.node_done();
            }
            _ => {}
        }
    }

    /// The path of a node that starts now (recording its position), or None if it is a key.
    fn node_path(&mut self, pos: Position) -> Option<FieldPath> {
        match self.stack.last_mut() {
            None => {
                self.positions.insert(FieldPath::root(), pos);
                Some(FieldPath::root())
            }
            Some(Frame::Map { path, key: Some(k) }) => Some(path.key(k)),
            Some(Frame::Map { key: None, .. }) | Some(Frame::Opaque) => None,
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                self.positions.insert(p.clone(), pos);
                Some(p)
            }
        }
    }

    fn node_value(&mut self, pos: Position) {
        self.node_path(pos);
        self.node_done();
    }

    /// A complete node was read: advance the parent to its next key or item.
    fn node_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { next, .. }) => *next += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn finds_keys_items_and_flow_values() {
        let text = "a: 1\nlist:\n  - name: x\n    deep: {k: [1, 2]}\n  - name: y\n";
        let loc = Locator::new(text);
        let root = FieldPath::root();
        assert_eq!(loc.find(&root.key("a")), pos(1, 1));
        assert_eq!(loc.find(&root.key("list").index(0)), pos(3, 5));
        assert_eq!(
            loc.find(&root.key("list").index(0).key("deep").key("k")),
            pos(4, 12)
        );
        assert_eq!(loc.find(&root.key("list").index(1).key("name")), pos(5, 5));
    }

    #[test]
    fn missing_field_falls_back_to_parent() {
        let loc = Locator::new("x:\n  y: 1\n");
        let p = FieldPath::root().key("x").key("missing");
        assert_eq!(loc.find(&p), pos(1, 1));
    }
}
