//! Framing on a link stream: how cells and peer messages follow one another
//! in a byte stream.
//!
//! A frame is a kind byte, then either exactly one cell ([`CELL_LEN`] bytes)
//! or a u32 length and a peer message of at most [`MAX_MESSAGE_LEN`] bytes.
//! [`decode_frame`] tells "not enough bytes yet" (`Ok(None)`) apart from
//! "malformed" (`Err`): the first means read more, the second means close the
//! link.

use super::{open_code, Cell, Error, PeerMessage, Reader, Writer, CELL_LEN, MAX_MESSAGE_LEN};

open_code! {
    /// The first byte of a frame.
    FrameKind {
        CELL = 1,
        MESSAGE = 2,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Cell(Cell),
    Message(PeerMessage),
}

/// Length of the largest frame: the buffer a link needs at most.
pub const MAX_FRAME_LEN: usize = 1 + 4 + MAX_MESSAGE_LEN;

/// Parse the frame at the start of `buf`. `Ok(Some((frame, n)))`: a frame of
/// `n` bytes; `Ok(None)`: the frame is not complete yet; `Err`: the stream is
/// malformed and cannot be resynchronised.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, Error> {
    let mut r = Reader::new(buf, "frame");
    let Ok(kind) = r.u8() else {
        return Ok(None);
    };
    match FrameKind(kind) {
        FrameKind::CELL => {
            let Ok(bytes) = r.take(CELL_LEN) else {
                return Ok(None);
            };
            Ok(Some((Frame::Cell(Cell::decode(bytes)?), 1 + CELL_LEN)))
        }
        FrameKind::MESSAGE => {
            let Ok(len) = r.u32() else {
                return Ok(None);
            };
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_MESSAGE_LEN {
                return Err(Error::TooLong {
                    what: "message frame",
                    len,
                    max: MAX_MESSAGE_LEN,
                });
            }
            let Ok(bytes) = r.take(len) else {
                return Ok(None);
            };
            Ok(Some((
                Frame::Message(PeerMessage::decode(bytes)?),
                1 + 4 + len,
            )))
        }
        FrameKind(code) => Err(Error::UnknownCommand {
            what: "frame",
            code,
        }),
    }
}

pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, Error> {
    match frame {
        Frame::Cell(cell) => {
            let mut w = Writer::with_capacity(1 + CELL_LEN);
            w.u8(FrameKind::CELL.0);
            cell.encode_into(&mut w)?;
            Ok(w.into_vec())
        }
        Frame::Message(msg) => {
            let body = msg.encode()?;
            let mut w = Writer::with_capacity(1 + 4 + body.len());
            w.u8(FrameKind::MESSAGE.0);
            w.len_u32(body.len(), MAX_MESSAGE_LEN, "message frame")?;
            w.bytes(&body);
            Ok(w.into_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CircId;

    #[test]
    fn incomplete_is_not_malformed() {
        let frame = encode_frame(&Frame::Message(PeerMessage::Ping { nonce: 5 })).unwrap();
        for cut in 0..frame.len() {
            assert_eq!(decode_frame(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        let (f, n) = decode_frame(&frame).unwrap().unwrap();
        assert_eq!(n, frame.len());
        assert_eq!(f, Frame::Message(PeerMessage::Ping { nonce: 5 }));
    }

    #[test]
    fn frames_follow_one_another() {
        let a = Frame::Cell(Cell::Padding { circ: CircId(0) });
        let b = Frame::Message(PeerMessage::Pong { nonce: 1 });
        let mut stream = encode_frame(&a).unwrap();
        stream.extend(encode_frame(&b).unwrap());
        let (fa, na) = decode_frame(&stream).unwrap().unwrap();
        let (fb, nb) = decode_frame(&stream[na..]).unwrap().unwrap();
        assert_eq!((fa, fb), (a, b));
        assert_eq!(na + nb, stream.len());
    }

    #[test]
    fn an_oversized_length_is_refused_without_waiting_for_it() {
        let mut bytes = vec![FrameKind::MESSAGE.0];
        bytes.extend_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_be_bytes());
        assert!(matches!(decode_frame(&bytes), Err(Error::TooLong { .. })));
        assert!(matches!(
            decode_frame(&[9]),
            Err(Error::UnknownCommand { code: 9, .. })
        ));
    }
}
