//! Channels spread over several brokers (several Redis servers) by
//! consistent hashing: each channel lives wholly on one shard, chosen by
//! rendezvous hashing of the channel's name with each shard's URL, so
//! every node that lists the same URLs (in any order) picks the same
//! shard, and adding a shard moves only the channels it wins.
//!
//! Node control (requests between nodes, the node list, the heartbeat)
//! goes through the first shard; health is every shard's.

use std::sync::Arc;

use super::{
    Broker, BrokerFuture, Control, NodeInfo, Placed, Reply, Request, Retention, Since, Stream,
};
use crate::protocol::{ClientInfo, Publication};

/// Several brokers, one per URL.
#[derive(Debug)]
pub(crate) struct Sharded {
    shards: Vec<(String, Arc<dyn Broker>)>,
}

/// FNV-1a, 64 bits: stable across builds and platforms (nodes built
/// apart must agree), unlike std's hasher.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Mixes a hash's bits (FNV's low bits are weak for short inputs).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The index in `urls` of the shard that holds `channel`.
pub(crate) fn shard_of(urls: &[&str], channel: &str) -> usize {
    urls.iter()
        .enumerate()
        .max_by_key(|(_, url)| (mix(fnv1a(&[url.as_bytes(), channel.as_bytes()])), **url))
        .map_or(0, |(i, _)| i)
}

impl Sharded {
    /// `shards`: (URL, broker), the first one carrying node control.
    pub(crate) fn new(shards: Vec<(String, Arc<dyn Broker>)>) -> Self {
        assert!(!shards.is_empty(), "at least one shard");
        Self { shards }
    }

    fn of(&self, channel: &str) -> &dyn Broker {
        let urls: Vec<&str> = self.shards.iter().map(|(u, _)| u.as_str()).collect();
        &*self.shards[shard_of(&urls, channel)].1
    }

    fn first(&self) -> &dyn Broker {
        &*self.shards[0].1
    }
}

impl Broker for Sharded {
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        retention: Retention,
    ) -> BrokerFuture<'a, Placed> {
        self.of(channel).publish(channel, publication, retention)
    }

    fn history<'a>(&'a self, channel: &'a str, since: Since) -> BrokerFuture<'a, Stream> {
        self.of(channel).history(channel, since)
    }

    fn subscribe(&self, channel: &str) {
        self.of(channel).subscribe(channel);
    }

    fn unsubscribe(&self, channel: &str) {
        self.of(channel).unsubscribe(channel);
    }

    fn join(&self, channel: &str, info: &Arc<ClientInfo>) {
        self.of(channel).join(channel, info);
    }

    fn leave(&self, channel: &str, client: &str) {
        self.of(channel).leave(channel, client);
    }

    fn presence<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, Vec<Arc<ClientInfo>>> {
        self.of(channel).presence(channel)
    }

    fn presence_count<'a>(&'a self, channel: &'a str) -> BrokerFuture<'a, usize> {
        self.of(channel).presence_count(channel)
    }

    fn sweep(&self) {
        for (_, shard) in &self.shards {
            shard.sweep();
        }
    }

    fn shared(&self) -> bool {
        self.first().shared()
    }

    fn health(&self) -> Result<(), String> {
        for (url, shard) in &self.shards {
            shard.health().map_err(|e| format!("{url}: {e}"))?;
        }
        Ok(())
    }

    fn stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut total: Vec<(&'static str, &'static str, u64)> = Vec::new();
        for (_, shard) in &self.shards {
            for (name, help, value) in shard.stats() {
                match total.iter_mut().find(|(n, _, _)| *n == name) {
                    // Gauges of several shards (up): all of them up.
                    Some(entry) if name.ends_with("_up") => entry.2 = entry.2.min(value),
                    Some(entry) => entry.2 += value,
                    None => total.push((name, help, value)),
                }
            }
        }
        total
    }

    fn set_control(&self, control: Arc<dyn Control>) {
        self.first().set_control(control);
    }

    fn ask<'a>(&'a self, node: &'a str, request: Request) -> BrokerFuture<'a, Option<Reply>> {
        self.first().ask(node, request)
    }

    fn heartbeat(&self, connections: usize) {
        // Every shard probes its own pub/sub connection; the first one
        // also keeps the node list.
        for (_, shard) in &self.shards {
            shard.heartbeat(connections);
        }
    }

    fn nodes(&self) -> BrokerFuture<'_, Vec<NodeInfo>> {
        self.first().nodes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_spread_evenly_and_stay_put_when_a_shard_is_added() {
        let three = ["redis://a:6379", "redis://b:6379", "redis://c:6379"];
        let four = [three[0], three[1], three[2], "redis://d:6379"];
        let mut counts = [0usize; 3];
        let mut moved = 0;
        let n = 30_000;
        for i in 0..n {
            let channel = format!("chat:{i}");
            let before = shard_of(&three, &channel);
            counts[before] += 1;
            let after = shard_of(&four, &channel);
            if after != before {
                assert_eq!(after, 3, "a channel moved between old shards");
                moved += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven: {counts:?}");
        }
        // About a quarter move, all to the new shard.
        assert!((6_000..9_000).contains(&moved), "moved {moved}");
        // The order URLs are listed in does not matter.
        let shuffled = [three[2], three[0], three[1]];
        for i in 0..1000 {
            let channel = format!("news:{i}");
            assert_eq!(
                three[shard_of(&three, &channel)],
                shuffled[shard_of(&shuffled, &channel)]
            );
        }
    }
}
