//! The chunked transfer coding of a response body (RFC 9112 §7.1), decoded from a buffer
//! as bytes arrive: sizes, data, the CRLF after each chunk, the trailer section. Pure (no
//! socket): the upstream connection feeds it, a fuzz target and the tests feed it
//! whatever they like, split wherever they like.

use crate::codec::h1::{bad, parse_chunk_size, Chunk, MAX_CHUNK_LINE, MAX_HEADERS, MAX_TRAILERS};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::io;

/// What the buffer held.
#[derive(Debug)]
pub enum Step {
    /// Some of the body's data.
    Data(Bytes),
    /// The body ended, with its trailer fields if it had any.
    End(Option<HeaderMap>),
    /// More bytes are needed; read at most this many of the current chunk's data next
    /// (0: a line or the trailers, whatever arrives).
    NeedMore(u64),
}

/// Decode the next step from `buf`, consuming what it used.
pub fn decode(buf: &mut BytesMut, state: &mut Chunk) -> io::Result<Step> {
    loop {
        match *state {
            Chunk::Size => {
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line = buf.split_to(pos + 1);
                    let size = parse_chunk_size(&line)?;
                    *state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    continue;
                }
                if buf.len() > MAX_CHUNK_LINE {
                    return Err(bad("chunk size line too long"));
                }
                return Ok(Step::NeedMore(0));
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore(left));
                }
                let n = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(n).freeze();
                *state = if n as u64 == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                return Ok(Step::Data(data));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    // A bare LF is accepted (RFC 9112 §2.2), so one byte may already say.
                    if buf.first().is_some_and(|b| *b != b'\r' && *b != b'\n') {
                        return Err(bad("chunk not followed by CRLF"));
                    }
                    if buf.first() == Some(&b'\n') {
                        buf.advance(1);
                        *state = Chunk::Size;
                        continue;
                    }
                    return Ok(Step::NeedMore(0));
                }
                if &buf[..2] == b"\r\n" {
                    buf.advance(2);
                } else if buf[0] == b'\n' {
                    buf.advance(1);
                } else {
                    return Err(bad("chunk not followed by CRLF"));
                }
                *state = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                return match httparse::parse_headers(buf, &mut slots) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let mut trailers = HeaderMap::new();
                        for f in fields {
                            if let (Ok(n), Ok(v)) = (
                                HeaderName::from_bytes(f.name.as_bytes()),
                                HeaderValue::from_bytes(f.value),
                            ) {
                                trailers.append(n, v);
                            }
                        }
                        buf.advance(len);
                        Ok(Step::End((!trailers.is_empty()).then_some(trailers)))
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_TRAILERS => {
                        Ok(Step::NeedMore(0))
                    }
                    Ok(httparse::Status::Partial) => Err(bad("trailer section too long")),
                    Err(e) => Err(bad(format!("invalid trailers: {e}"))),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole body from `input` fed in pieces of `piece` bytes: (data, trailers), or the
    /// error, or "incomplete".
    fn run(input: &[u8], piece: usize) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
        let mut state = Chunk::Size;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match decode(&mut buf, &mut state).map_err(|e| e.to_string())? {
                Step::Data(d) => data.extend_from_slice(&d),
                Step::End(t) => return Ok((data, t)),
                Step::NeedMore(_) => {
                    if fed >= input.len() {
                        return Err("incomplete".into());
                    }
                    let end = (fed + piece).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn rfc_9112_7_1_framings_decode_the_same_in_any_pieces() {
        type Case<'a> = (&'a [u8], Result<&'a [u8], &'a str>);
        let cases: &[Case<'_>] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                Ok(b"hello world"),
            ),
            // chunk-ext is allowed and ignored (§7.1.1).
            (b"5;name=value\r\nhello\r\n0;x\r\n\r\n", Ok(b"hello")),
            // Hex, either case.
            (b"A\r\n0123456789\r\n0\r\n\r\n", Ok(b"0123456789")),
            (b"a\r\n0123456789\r\n0\r\n\r\n", Ok(b"0123456789")),
            // A bare LF as line terminator (§2.2 lets a recipient accept it).
            (b"5\nhello\n0\n\n", Ok(b"hello")),
            (b"0\r\n\r\n", Ok(b"")),
            (
                b"5\r\nhello!\r\n0\r\n\r\n",
                Err("chunk not followed by CRLF"),
            ),
            (b"x\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size")),
            (b"-5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size")),
            (b" 5\r\nhello\r\n0\r\n\r\n", Err("invalid chunk size")),
            // 17 hex digits: more than 64 bits (§7.1: guard against overflow).
            (b"10000000000000000\r\n", Err("chunk size")),
            (b"5\r\nhel", Err("incomplete")),
            (b"5\r\nhello\r\n0\r\n", Err("incomplete")),
        ];
        for (input, want) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                let got = run(input, piece);
                match want {
                    Ok(d) => {
                        assert_eq!(
                            got.as_ref().map(|(x, _)| x.as_slice()),
                            Ok(*d),
                            "{:?} in pieces of {piece}",
                            String::from_utf8_lossy(input)
                        );
                    }
                    Err(e) => {
                        let got = got.err().unwrap_or_default();
                        assert!(
                            got.contains(e),
                            "{:?} in pieces of {piece}: {got}",
                            String::from_utf8_lossy(input)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn trailers_are_returned_at_the_end() {
        let (data, t) = run(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx-a: 1\r\n\r\n", 4).unwrap();
        assert_eq!(data, b"abc");
        let t = t.expect("trailers");
        assert_eq!(t.get("grpc-status").unwrap(), "0");
        assert_eq!(t.get("x-a").unwrap(), "1");
    }

    #[test]
    fn an_endless_size_line_or_trailer_section_is_refused() {
        let long = vec![b'1'; MAX_CHUNK_LINE + 2];
        assert!(run(&long, 512).unwrap_err().contains("too long"));
        let mut t = b"0\r\nx-a: ".to_vec();
        t.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 10));
        assert!(run(&t, 4096).unwrap_err().contains("too long"));
    }
}
