//! A settled network from the start: every node's predecessor, successor
//! list and fingers as stabilization converges to them, computed from the
//! sorted ids and installed in each core. Experiments on tens of thousands
//! of nodes start here, as Chord's simulations of a stable network did;
//! joining them one by one would take the machine hours. Everything after
//! runs the ordinary code.

use super::Net;
use crate::ring::{add_pow2, Peer};
use crate::wire::NodeId;

impl Net {
    /// Install the settled ring state in every live node.
    pub fn settle_ring(&mut self) {
        let mut order: Vec<(NodeId, usize)> = (0..self.len())
            .filter(|&i| self.is_alive(i) && self.core(i).ring().is_member())
            .map(|i| (self.core(i).id(), i))
            .collect();
        order.sort();
        let n = order.len();
        if n == 0 {
            return;
        }
        let peers: Vec<Peer> = order
            .iter()
            .map(|&(_, i)| Peer::new(self.core(i).descriptor().clone()))
            .collect();
        let ids: Vec<NodeId> = order.iter().map(|(id, _)| *id).collect();
        // The first node at or after `point`, wrapping.
        let successor = |point: &[u8; 32]| -> usize {
            match ids.binary_search_by(|id| id.0.cmp(point)) {
                Ok(k) => k,
                Err(k) => k % n,
            }
        };
        for k in 0..n {
            let (me, i) = order[k];
            let len = self.core(i).ring().successor_len();
            let successors: Vec<Peer> = (1..n.min(len + 1))
                .map(|d| peers[(k + d) % n].clone())
                .collect();
            let predecessor = (n > 1).then(|| peers[(k + n - 1) % n].clone());
            let fingers: Vec<Option<Peer>> = (0..256)
                .map(|b| {
                    let f = successor(&add_pow2(&me.0, b));
                    (f != k).then(|| peers[f].clone())
                })
                .collect();
            self.settle_node(i, predecessor, successors, fingers);
        }
    }
}
