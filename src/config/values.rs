//! Small value types of the config file, each parsed from its text form with a message that
//! tells the admin what was expected.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written with a unit: `500ms`, `1s`, `1.5s`, `2m`, `1h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
            (n, 0.001)
        } else if let Some(n) = t.strip_suffix('s') {
            (n, 1.0)
        } else if let Some(n) = t.strip_suffix('m') {
            (n, 60.0)
        } else if let Some(n) = t.strip_suffix('h') {
            (n, 3600.0)
        } else {
            return Err(format!(
                "`{text}` needs a unit: write it like 500ms, 1s, 2m or 1h"
            ));
        };
        let value: f64 = num
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a duration (like 500ms, 1s or 2m)"))?;
        if !value.is_finite() || value < 0.0 || value * scale > 86_400.0 {
            return Err(format!("`{text}` is out of range: at most 24h"));
        }
        Ok(Self(Duration::from_secs_f64(value * scale)))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms >= 1000.0 && (ms / 1000.0).fract() == 0.0 {
            write!(f, "{}s", ms / 1000.0)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "a duration like 500ms or 1s")?;
        Span::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A ratio written as a percentage: `20%` (or a bare number, read as percent).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "a percentage like 20%")?;
        let num = text.trim().trim_end_matches('%').trim();
        match num.parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(Percent(v / 100.0)),
            _ => Err(de::Error::custom(format!(
                "`{text}` is not a percentage from 0% to 100%"
            ))),
        }
    }
}

/// A port or an inclusive port range: `3074`, `"27015-27030"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        let port = |s: &str| -> Result<u16, String> {
            match s.trim().parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
                _ => Err(format!(
                    "`{text}` is not a port from 1 to 65535 or a range like 8000-8010"
                )),
            }
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!(
                "`{text}` is a reversed range: the first port must not exceed the last"
            ));
        }
        Ok(Self { first, last })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Splits a port list so each part fits one `-m multiport` match: 15 slots, a range
    /// takes two.
    pub fn chunks(ports: &[PortRange]) -> Vec<Vec<PortRange>> {
        const MULTIPORT_MAX: usize = 15;
        let mut chunks: Vec<Vec<PortRange>> = Vec::new();
        let mut used = 0;
        for p in ports {
            let cost = if p.first == p.last { 1 } else { 2 };
            if chunks.is_empty() || used + cost > MULTIPORT_MAX {
                chunks.push(Vec::new());
                used = 0;
            }
            chunks.last_mut().expect("pushed above").push(*p);
            used += cost;
        }
        chunks
    }

    /// The iptables form: `3074` or `27015:27030`.
    pub fn iptables(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "a port or a range like 8000-8010")?;
        PortRange::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An integer that may be written in hex: `0xff00` or `65280`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HexU32(pub u32);

impl<'de> Deserialize<'de> for HexU32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "an integer like 0xff00")?;
        let t = text.trim();
        let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => t.parse::<u32>(),
        };
        parsed
            .map(HexU32)
            .map_err(|_| de::Error::custom(format!("`{text}` is not a 32-bit integer like 0xff00")))
    }
}

/// A network of either family, or a single address (taken as /32 or /128):
/// `10.0.0.0/24`, `10.0.0.50`, `2001:db8:10::/64`, `2001:db8::5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(
            d,
            "a network like 10.0.0.0/24 or 2001:db8::/64, or an address",
        )?;
        let t = text.trim();
        let parsed = if t.contains('/') {
            t.parse::<ipnet::IpNet>().ok()
        } else {
            t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from)
        };
        parsed.map(|n| Net(n.trunc())).ok_or_else(|| {
            de::Error::custom(format!(
                "`{text}` is not a network like 10.0.0.0/24 or 2001:db8::/64, or an address"
            ))
        })
    }
}

/// An interface address with its prefix, host bits kept: `10.50.0.1/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr(pub ipnet::Ipv4Net);

impl<'de> Deserialize<'de> for IfAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = scalar_text(d, "an interface address like 10.50.0.1/24")?;
        let parsed = text.trim().parse::<ipnet::Ipv4Net>().ok();
        parsed
            .filter(|n| n.prefix_len() == 32 || n.addr() != n.network())
            .filter(|n| n.prefix_len() >= 31 || n.addr() != n.broadcast())
            .map(IfAddr)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "`{text}` is not an interface address with its prefix, like 10.50.0.1/24"
                ))
            })
    }
}

/// A list that may also be written as a single item.
#[derive(Clone, Debug, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_norway::Value;
        match Value::deserialize(d)? {
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let v = T::deserialize(item)
                        .map_err(|e| de::Error::custom(format!("item {i}: {e}")))?;
                    out.push(v);
                }
                Ok(Self(out))
            }
            single => T::deserialize(single)
                .map(|v| Self(vec![v]))
                .map_err(de::Error::custom),
        }
    }
}

/// Reads a scalar (string, number or bool) as text, so `500`, `"500ms"` and `0xff00` all
/// reach the parser of the value type, which then says what is wrong with them.
fn scalar_text<'de, D: Deserializer<'de>>(
    d: D,
    expected: &'static str,
) -> Result<String, D::Error> {
    struct V(&'static str);
    impl de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_need_units() {
        assert_eq!(Span::parse("500ms").unwrap().0, Duration::from_millis(500));
        assert_eq!(Span::parse("1.5s").unwrap().0, Duration::from_millis(1500));
        assert_eq!(Span::parse("2m").unwrap().0, Duration::from_secs(120));
        assert!(Span::parse("500").unwrap_err().contains("needs a unit"));
        assert!(Span::parse("fast").is_err());
        assert_eq!(Span::parse("500ms").unwrap().to_string(), "500ms");
        assert_eq!(Span::parse("10s").unwrap().to_string(), "10s");
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("3074").unwrap(),
            PortRange {
                first: 3074,
                last: 3074
            }
        );
        assert_eq!(
            PortRange::parse("27015-27030").unwrap().iptables(),
            "27015:27030"
        );
        assert!(PortRange::parse("0").is_err());
        assert!(PortRange::parse("70000").is_err());
        assert!(PortRange::parse("20-10").unwrap_err().contains("reversed"));
    }

    #[test]
    fn hex_and_percent() {
        let h: HexU32 = serde_norway::from_str("0xff00").unwrap();
        assert_eq!(h.0, 0xff00);
        let h: HexU32 = serde_norway::from_str("\"0x10\"").unwrap();
        assert_eq!(h.0, 0x10);
        let p: Percent = serde_norway::from_str("20%").unwrap();
        assert!((p.0 - 0.2).abs() < 1e-12);
        assert!(serde_norway::from_str::<Percent>("120%").is_err());
    }

    #[test]
    fn one_or_many_accepts_both() {
        let one: OneOrMany<String> = serde_norway::from_str("a").unwrap();
        assert_eq!(one.0, vec!["a"]);
        let many: OneOrMany<String> = serde_norway::from_str("[a, b]").unwrap();
        assert_eq!(many.0, vec!["a", "b"]);
    }
}
