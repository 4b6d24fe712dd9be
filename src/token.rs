//! Tokens: how the caller of a state machine names a request it started
//! (a lookup, a routed request, a circuit request), so that the answer
//! finds its way back. Chosen by the caller, opaque to the machine, never
//! sent on the wire: nothing of it reaches another node.

/// A caller's name for one request in progress.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.0)
    }
}

/// Hands out tokens in order: unique for the life of one caller, and the
/// same sequence on every run, which keeps simulations reproducible.
#[derive(Debug, Default)]
pub struct Tokens {
    next: u64,
}

impl Tokens {
    pub fn issue(&mut self) -> Token {
        self.next = self.next.wrapping_add(1);
        Token(self.next)
    }
}
