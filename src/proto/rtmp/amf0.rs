//! AMF0 (Adobe "Action Message Format -- AMF 0", 2007): the encoder for our commands and
//! metadata, and a streaming, non-recursive, allocation-free decoder for the origin's replies.
//!
//! Owns: the wire format of numbers, booleans, strings, objects, ECMA/strict arrays, null,
//! undefined and dates. Must not interpret commands (that is `publisher`). The decoder keeps an
//! explicit container stack of [`MAX_DEPTH`] entries, so hostile nesting is an error, never a
//! stack overflow; every length is checked against the remaining input.

/// AMF0 type markers (AMF0 spec 2.1).
pub mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
}

/// Deepest container nesting the decoder accepts. Origin replies nest 2 levels.
pub const MAX_DEPTH: usize = 16;

/// AMF0 decoding errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amf0Error {
    /// Input ended inside a value.
    Truncated,
    /// Containers nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A type marker we do not decode (references, XML, typed objects, AMF3 switch).
    UnsupportedMarker(u8),
    /// A string that is not UTF-8.
    BadUtf8,
    /// A value of a different type than the command layout requires.
    Unexpected,
}

// ---- encoding (into a reused Vec; only command/metadata paths, never per frame) ----

pub fn write_number(out: &mut Vec<u8>, v: f64) {
    out.push(marker::NUMBER);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(&[marker::BOOLEAN, v as u8]);
}

/// A string; longer than 65535 bytes becomes a long string (AMF0 2.14).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    match u16::try_from(s.len()) {
        Ok(n) => {
            out.push(marker::STRING);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            out.push(marker::LONG_STRING);
            // Our strings come from config/URLs, far below 4 GiB.
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

pub fn write_null(out: &mut Vec<u8>) {
    out.push(marker::NULL);
}

pub fn write_undefined(out: &mut Vec<u8>) {
    out.push(marker::UNDEFINED);
}

pub fn write_object_start(out: &mut Vec<u8>) {
    out.push(marker::OBJECT);
}

/// ECMA array header (AMF0 2.10); the count is advisory, properties end with an object end.
pub fn write_ecma_array_start(out: &mut Vec<u8>, count: u32) {
    out.push(marker::ECMA_ARRAY);
    out.extend_from_slice(&count.to_be_bytes());
}

/// A property name inside an object or ECMA array (UTF-8-empty names are reserved for the end).
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    let n = key.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&key.as_bytes()[..n]);
}

/// Ends an object or ECMA array: empty name + object-end marker (AMF0 2.11).
pub fn write_object_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

pub fn write_prop_string(out: &mut Vec<u8>, key: &str, v: &str) {
    write_key(out, key);
    write_string(out, v);
}

pub fn write_prop_number(out: &mut Vec<u8>, key: &str, v: f64) {
    write_key(out, key);
    write_number(out, v);
}

pub fn write_prop_bool(out: &mut Vec<u8>, key: &str, v: bool) {
    write_key(out, key);
    write_bool(out, v);
}

// ---- decoding ----

/// One decoded token. Containers open with `*Start` and close with `End`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amf0Value<'a> {
    Number(f64),
    Boolean(bool),
    String(&'a str),
    Null,
    Undefined,
    /// Milliseconds since the Unix epoch (the time-zone field is ignored, as the spec says).
    Date(f64),
    ObjectStart,
    EcmaArrayStart {
        count: u32,
    },
    StrictArrayStart {
        count: u32,
    },
    End,
}

/// A token and, inside objects and ECMA arrays, its property name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Amf0Item<'a> {
    pub key: Option<&'a str>,
    pub value: Amf0Value<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Object,
    Strict { remaining: u32 },
}

/// Streaming AMF0 decoder over a borrowed message payload.
pub struct Amf0Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    stack: [Container; MAX_DEPTH],
    depth: usize,
}

impl<'a> Amf0Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Amf0Decoder {
            buf,
            pos: 0,
            stack: [Container::Object; MAX_DEPTH],
            depth: 0,
        }
    }

    /// Current container nesting (0 at top level).
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_be_bytes(a)))
    }

    fn str(&mut self, n: usize) -> Result<&'a str, Amf0Error> {
        core::str::from_utf8(self.take(n)?).map_err(|_| Amf0Error::BadUtf8)
    }

    fn push(&mut self, c: Container) -> Result<(), Amf0Error> {
        if self.depth == MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        self.stack[self.depth] = c;
        self.depth += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Amf0Value<'a>, Amf0Error> {
        let m = self.take(1)?[0];
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.take(1)?[0] != 0),
            marker::STRING => {
                let n = self.u16()? as usize;
                Amf0Value::String(self.str(n)?)
            }
            marker::LONG_STRING => {
                let n = self.u32()? as usize;
                Amf0Value::String(self.str(n)?)
            }
            marker::OBJECT => {
                self.push(Container::Object)?;
                Amf0Value::ObjectStart
            }
            marker::ECMA_ARRAY => {
                let count = self.u32()?;
                self.push(Container::Object)?;
                Amf0Value::EcmaArrayStart { count }
            }
            marker::STRICT_ARRAY => {
                let count = self.u32()?;
                self.push(Container::Strict { remaining: count })?;
                Amf0Value::StrictArrayStart { count }
            }
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED | marker::UNSUPPORTED => Amf0Value::Undefined,
            marker::DATE => {
                let ms = self.f64()?;
                self.take(2)?; // time zone, "should be 0x0000" (AMF0 2.13)
                Amf0Value::Date(ms)
            }
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// The next token, or `None` at the end of the input at top level.
    pub fn next_item(&mut self) -> Result<Option<Amf0Item<'a>>, Amf0Error> {
        if self.depth == 0 {
            if self.pos == self.buf.len() {
                return Ok(None);
            }
            return Ok(Some(Amf0Item {
                key: None,
                value: self.value()?,
            }));
        }
        let top = self.depth - 1;
        match self.stack[top] {
            Container::Object => {
                let n = self.u16()? as usize;
                if n == 0 && self.buf.get(self.pos) == Some(&marker::OBJECT_END) {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Some(Amf0Item {
                        key: None,
                        value: Amf0Value::End,
                    }));
                }
                let key = self.str(n)?;
                Ok(Some(Amf0Item {
                    key: Some(key),
                    value: self.value()?,
                }))
            }
            Container::Strict { remaining: 0 } => {
                self.depth -= 1;
                Ok(Some(Amf0Item {
                    key: None,
                    value: Amf0Value::End,
                }))
            }
            Container::Strict { remaining } => {
                self.stack[top] = Container::Strict {
                    remaining: remaining - 1,
                };
                Ok(Some(Amf0Item {
                    key: None,
                    value: self.value()?,
                }))
            }
        }
    }

    /// Like [`Amf0Decoder::next_item`] but end of input is an error.
    pub fn expect_item(&mut self) -> Result<Amf0Item<'a>, Amf0Error> {
        self.next_item()?.ok_or(Amf0Error::Truncated)
    }

    /// Skips the rest of a value whose first token was `v` (a no-op unless `v` opened a container).
    pub fn skip(&mut self, v: Amf0Value<'a>) -> Result<(), Amf0Error> {
        let opened = matches!(
            v,
            Amf0Value::ObjectStart
                | Amf0Value::EcmaArrayStart { .. }
                | Amf0Value::StrictArrayStart { .. }
        );
        if !opened {
            return Ok(());
        }
        // The container just opened sits at `self.depth`; read until we are back above it.
        let target = self.depth - 1;
        while self.depth > target {
            self.expect_item()?;
        }
        Ok(())
    }
}

/// The fields of an AMF0 info object we act on (RTMP spec 7.2.1.1 / 7.2.2: `level`, `code`,
/// `description`). Strings borrow the message payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InfoObject<'a> {
    pub level: &'a str,
    pub code: &'a str,
    pub description: &'a str,
}

/// Reads an info object whose start token was `v`; any other value type yields an empty info.
pub fn read_info<'a>(
    d: &mut Amf0Decoder<'a>,
    v: Amf0Value<'a>,
) -> Result<InfoObject<'a>, Amf0Error> {
    let mut info = InfoObject::default();
    if !matches!(v, Amf0Value::ObjectStart | Amf0Value::EcmaArrayStart { .. }) {
        d.skip(v)?;
        return Ok(info);
    }
    loop {
        let item = d.expect_item()?;
        match (item.key, item.value) {
            (_, Amf0Value::End) => return Ok(info),
            (Some("level"), Amf0Value::String(s)) => info.level = s,
            (Some("code"), Amf0Value::String(s)) => info.code = s,
            (Some("description"), Amf0Value::String(s)) => info.description = s,
            (_, other) => d.skip(other)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte vectors from the AMF0 spec's layouts: marker, then big-endian payload.
    #[test]
    fn encode_vectors() {
        let mut b = Vec::new();
        write_number(&mut b, 1.0);
        assert_eq!(b, [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        b.clear();
        write_bool(&mut b, true);
        write_null(&mut b);
        write_undefined(&mut b);
        write_string(&mut b, "connect");
        assert_eq!(
            b,
            [0x01, 0x01, 0x05, 0x06, 0x02, 0, 7, b'c', b'o', b'n', b'n', b'e', b'c', b't']
        );
        b.clear();
        write_object_start(&mut b);
        write_prop_string(&mut b, "app", "live");
        write_object_end(&mut b);
        assert_eq!(
            b,
            [0x03, 0, 3, b'a', b'p', b'p', 0x02, 0, 4, b'l', b'i', b'v', b'e', 0, 0, 9]
        );
        b.clear();
        write_ecma_array_start(&mut b, 1);
        write_prop_bool(&mut b, "stereo", false);
        write_object_end(&mut b);
        assert_eq!(
            b,
            [0x08, 0, 0, 0, 1, 0, 6, b's', b't', b'e', b'r', b'e', b'o', 0x01, 0x00, 0, 0, 9]
        );
        b.clear();
        let long = "x".repeat(70_000);
        write_string(&mut b, &long);
        assert_eq!(&b[..5], &[0x0C, 0, 1, 0x11, 0x70]);
        assert_eq!(b.len(), 5 + 70_000);
    }

    #[test]
    fn decode_roundtrip_tokens() {
        let mut b = Vec::new();
        write_string(&mut b, "_result");
        write_number(&mut b, 4.0);
        write_null(&mut b);
        write_object_start(&mut b);
        write_prop_string(&mut b, "level", "status");
        write_key(&mut b, "nested");
        write_ecma_array_start(&mut b, 0);
        write_prop_number(&mut b, "n", 2.5);
        write_object_end(&mut b);
        write_prop_string(&mut b, "code", "NetConnection.Connect.Success");
        write_object_end(&mut b);
        b.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 2, 0x05, 0x06]);
        b.extend_from_slice(&[marker::DATE, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0]);

        let mut d = Amf0Decoder::new(&b);
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::String("_result"));
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::Number(4.0));
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::Null);
        let obj = d.expect_item().unwrap().value;
        let info = read_info(&mut d, obj).unwrap();
        assert_eq!(
            (info.level, info.code),
            ("status", "NetConnection.Connect.Success")
        );
        assert_eq!(d.depth(), 0);
        let arr = d.expect_item().unwrap().value;
        assert_eq!(arr, Amf0Value::StrictArrayStart { count: 2 });
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::Null);
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::Undefined);
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::End);
        assert_eq!(d.expect_item().unwrap().value, Amf0Value::Date(1.0));
        assert_eq!(d.next_item().unwrap(), None);
    }

    #[test]
    fn hostile_inputs_are_errors() {
        // 1000 nested objects: the explicit stack refuses at MAX_DEPTH, no recursion.
        let mut deep = vec![marker::OBJECT];
        for _ in 0..999 {
            deep.extend_from_slice(&[0, 1, b'a', marker::OBJECT]);
        }
        let mut d = Amf0Decoder::new(&deep);
        let first = d.expect_item().unwrap().value;
        assert_eq!(d.skip(first), Err(Amf0Error::TooDeep));
        // Lengths past the end.
        for bad in [
            &[0x02, 0xFF, 0xFF, b'a'][..],
            &[0x0C, 0xFF, 0xFF, 0xFF, 0xFF],
            &[0x00, 1, 2],
        ] {
            assert_eq!(Amf0Decoder::new(bad).next_item(), Err(Amf0Error::Truncated));
        }
        // A strict array claiming 4 billion elements ends when the input does.
        let mut d = Amf0Decoder::new(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]);
        let v = d.expect_item().unwrap().value;
        assert_eq!(d.skip(v), Err(Amf0Error::Truncated));
        assert_eq!(
            Amf0Decoder::new(&[0x11]).next_item(),
            Err(Amf0Error::UnsupportedMarker(0x11))
        );
        assert_eq!(
            Amf0Decoder::new(&[0x02, 0, 1, 0xFF]).next_item(),
            Err(Amf0Error::BadUtf8)
        );
        // An object that never ends.
        let mut d = Amf0Decoder::new(&[0x03, 0, 1, b'k', 0x05]);
        let v = d.expect_item().unwrap().value;
        assert_eq!(read_info(&mut d, v), Err(Amf0Error::Truncated));
    }
}
