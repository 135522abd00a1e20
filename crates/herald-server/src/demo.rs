//! The demos `herald serve` brings up: a chat room, a live quote ticker
//! fed by a simulated price feed, and a small multiplayer game whose
//! monsters move by server logic (an [`Endpoint`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::endpoint::{Endpoint, Endpoints, Session};
use crate::hub::Hub;

pub(crate) const INDEX: &str = include_str!("../../../web/demo/index.html");
pub(crate) const CHAT: &str = include_str!("../../../web/demo/chat.html");
pub(crate) const QUOTES: &str = include_str!("../../../web/demo/quotes.html");
pub(crate) const GAME: &str = include_str!("../../../web/demo/game.html");
pub(crate) const HERALD_JS: &str = include_str!("../../../web/herald.js");

/// Symbols of the simulated feed; channel `quotes:<SYMBOL>`.
pub const SYMBOLS: [&str; 4] = ["ACME", "GLOBEX", "INITECH", "UMBRELLA"];

/// The game's channel.
pub const ARENA: &str = "game:arena";

/// Starts the price feed and the game loop; abort the handle to stop both.
pub(crate) fn start(hub: &Arc<Hub>, endpoints: &Endpoints) -> tokio::task::JoinHandle<()> {
    let game = Arc::new(Game::default());
    endpoints.set("game", game.clone());
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut prices: Vec<f64> = vec![100.0, 250.0, 42.0, 13.37];
        let mut quote_tick = tokio::time::interval(Duration::from_millis(250));
        let mut game_tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = quote_tick.tick() => {
                    for (symbol, price) in SYMBOLS.iter().zip(prices.iter_mut()) {
                        let change = (rand::random::<f64>() - 0.5) * *price * 0.004;
                        *price = (*price + change).max(0.01);
                        let data = serde_json::json!({
                            "symbol": symbol,
                            "price": (*price * 100.0).round() / 100.0,
                            "change": (change * 100.0).round() / 100.0,
                            "ts": crate::auth::unix_now(),
                        });
                        if let Ok(raw) = RawValue::from_string(data.to_string()) {
                            let _ = hub.publish(&format!("quotes:{symbol}"), raw, None).await;
                        }
                    }
                }
                _ = game_tick.tick() => game.tick(&hub),
            }
        }
    })
}

const WIDTH: i32 = 20;
const HEIGHT: i32 = 12;
/// A player's health when it (re)spawns; a monster's touch costs one.
const HEALTH: u32 = 3;
/// Monsters step every this many ticks: slower than a player can move.
const MONSTER_EVERY: u64 = 3;
/// Ticks a player cannot be hurt again after a hit, so one monster on the
/// square does not drain every point at once.
const INVULNERABLE_TICKS: u64 = 5;
/// A point of score per this many ticks alive (one a second).
const SCORE_EVERY: u64 = 5;

#[derive(Debug, Clone, Serialize)]
struct Piece {
    id: String,
    x: i32,
    y: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Players only: health left, score, deaths.
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deaths: Option<u32>,
    /// The tick until which a hit does not count.
    #[serde(skip)]
    safe_until: u64,
}

impl Piece {
    fn monster(i: i32) -> Self {
        Self {
            id: format!("m{i}"),
            x: 3 + i * 4,
            y: 2 + i * 2,
            name: None,
            health: None,
            score: None,
            deaths: None,
            safe_until: 0,
        }
    }
}

#[derive(Debug)]
struct World {
    tick: u64,
    monsters: Vec<Piece>,
    players: HashMap<String, Piece>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            tick: 0,
            monsters: (0..4).map(Piece::monster).collect(),
            players: HashMap::new(),
        }
    }
}

impl World {
    /// The square farthest from every player and monster (Chebyshev
    /// distance), off the border so every first move works; the first
    /// such square in reading order, so it is deterministic.
    fn spawn_point(&self, except: Option<&str>) -> (i32, i32) {
        let others: Vec<(i32, i32)> = self
            .players
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != except)
            .map(|(_, p)| (p.x, p.y))
            .chain(self.monsters.iter().map(|m| (m.x, m.y)))
            .collect();
        let mut best = (1, HEIGHT - 2);
        let mut best_distance = -1;
        for y in 1..HEIGHT - 1 {
            for x in 1..WIDTH - 1 {
                let d = others
                    .iter()
                    .map(|&(ox, oy)| (ox - x).abs().max((oy - y).abs()))
                    .min()
                    .unwrap_or(i32::MAX);
                if d > best_distance {
                    best = (x, y);
                    best_distance = d;
                }
            }
        }
        best
    }

    fn join(&mut self, id: &str, name: Option<String>) {
        let (x, y) = self.spawn_point(Some(id));
        self.players.insert(
            id.to_owned(),
            Piece {
                id: id.to_owned(),
                x,
                y,
                name,
                health: Some(HEALTH),
                score: Some(0),
                deaths: Some(0),
                safe_until: self.tick + INVULNERABLE_TICKS,
            },
        );
    }

    /// One tick: monsters chase the nearest player, a monster on a
    /// player's square costs a health point, a player out of health
    /// respawns far from everyone with its score reset, the living score.
    fn step(&mut self) {
        self.tick += 1;
        if self.tick.is_multiple_of(MONSTER_EVERY) {
            for i in 0..self.monsters.len() {
                let (x, y) = self.monster_step(i);
                self.monsters[i].x = x;
                self.monsters[i].y = y;
            }
        }
        self.collide();
    }

    /// Where monster `i` goes: one square toward the nearest player, along
    /// the longer way first, not onto another monster; with no player in
    /// the arena, a random step.
    fn monster_step(&self, i: usize) -> (i32, i32) {
        let m = &self.monsters[i];
        let target = self
            .players
            .values()
            .min_by_key(|p| ((p.x - m.x).abs() + (p.y - m.y).abs(), p.id.clone()));
        let moves: Vec<(i32, i32)> = match target {
            Some(p) => {
                let (dx, dy) = ((p.x - m.x).signum(), (p.y - m.y).signum());
                if (p.x - m.x).abs() >= (p.y - m.y).abs() {
                    vec![(dx, 0), (0, dy)]
                } else {
                    vec![(0, dy), (dx, 0)]
                }
            }
            None => {
                vec![[(1, 0), (-1, 0), (0, 1), (0, -1)][rand::random::<u32>() as usize % 4]]
            }
        };
        moves
            .into_iter()
            .filter(|&(dx, dy)| (dx, dy) != (0, 0))
            .map(|(dx, dy)| {
                (
                    (m.x + dx).clamp(0, WIDTH - 1),
                    (m.y + dy).clamp(0, HEIGHT - 1),
                )
            })
            .find(|&(x, y)| {
                !self
                    .monsters
                    .iter()
                    .enumerate()
                    .any(|(j, o)| j != i && o.x == x && o.y == y)
            })
            .unwrap_or((m.x, m.y))
    }

    /// Collisions after a player's move, between ticks: no score.
    fn collide_now(&mut self) {
        self.collide_at(false);
    }

    fn collide(&mut self) {
        self.collide_at(self.tick.is_multiple_of(SCORE_EVERY));
    }

    fn collide_at(&mut self, score: bool) {
        let tick = self.tick;
        let mut dead = Vec::new();
        for p in self.players.values_mut() {
            let hit = self.monsters.iter().any(|m| m.x == p.x && m.y == p.y);
            if hit && tick >= p.safe_until {
                let health = p.health.unwrap_or(HEALTH).saturating_sub(1);
                p.health = Some(health);
                p.safe_until = tick + INVULNERABLE_TICKS;
                if health == 0 {
                    dead.push(p.id.clone());
                }
            } else if score {
                p.score = Some(p.score.unwrap_or(0) + 1);
            }
        }
        for id in dead {
            let (x, y) = self.spawn_point(Some(&id));
            if let Some(p) = self.players.get_mut(&id) {
                p.x = x;
                p.y = y;
                p.health = Some(HEALTH);
                p.score = Some(0);
                p.deaths = Some(p.deaths.unwrap_or(0) + 1);
                p.safe_until = tick + INVULNERABLE_TICKS;
            }
        }
    }
}

/// The game: monsters chase the nearest player; a touch costs health, and
/// a player out of health respawns with its score reset; players move
/// with `{"dir": "up" | "down" | "left" | "right"}` published to
/// `game:arena`.
#[derive(Debug, Default)]
struct Game {
    world: Mutex<World>,
}

impl Game {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self, hub: &Arc<Hub>) {
        let mut world = self.world();
        world.step();
        Self::broadcast(&world, hub);
    }

    fn broadcast(world: &World, hub: &Arc<Hub>) {
        let state = serde_json::json!({
            "tick": world.tick,
            "width": WIDTH,
            "height": HEIGHT,
            "monsters": world.monsters,
            "players": world.players.values().collect::<Vec<_>>(),
        });
        if let Ok(raw) = RawValue::from_string(state.to_string()) {
            let _ = hub.publish_detached(ARENA, raw, None);
        }
    }
}

impl Endpoint for Game {
    fn on_open(&self, hub: &Arc<Hub>, session: &Session, _namespace: &str) {
        let info = session.info();
        let mut world = self.world();
        world.join(&info.client, info.name.clone());
        Self::broadcast(&world, hub);
    }

    fn on_message(&self, hub: &Arc<Hub>, session: &Session, _channel: &str, data: &RawValue) {
        #[derive(serde::Deserialize)]
        struct Move {
            dir: String,
        }
        let Ok(m) = serde_json::from_str::<Move>(data.get()) else {
            return;
        };
        let (dx, dy) = match m.dir.as_str() {
            "up" => (0, -1),
            "down" => (0, 1),
            "left" => (-1, 0),
            "right" => (1, 0),
            _ => return,
        };
        let mut world = self.world();
        if let Some(p) = world.players.get_mut(&session.info().client) {
            p.x = (p.x + dx).clamp(0, WIDTH - 1);
            p.y = (p.y + dy).clamp(0, HEIGHT - 1);
        }
        // Walking into a monster hurts as much as being caught.
        world.collide_now();
        Self::broadcast(&world, hub);
    }

    fn on_close(&self, hub: &Arc<Hub>, session: &Session, _namespace: &str) {
        let mut world = self.world();
        world.players.remove(&session.info().client);
        Self::broadcast(&world, hub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world_with(players: &[(&str, i32, i32)], monsters: &[(i32, i32)]) -> World {
        let mut w = World {
            monsters: monsters
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| Piece {
                    x,
                    y,
                    ..Piece::monster(i as i32)
                })
                .collect(),
            ..World::default()
        };
        for &(id, x, y) in players {
            w.join(id, None);
            let p = w.players.get_mut(id).unwrap();
            p.x = x;
            p.y = y;
            p.safe_until = 0;
        }
        w
    }

    #[test]
    fn players_spawn_apart_from_players_and_monsters() {
        let mut w = World::default();
        w.join("a", None);
        w.join("b", None);
        let (a, b) = (&w.players["a"], &w.players["b"]);
        let apart = (a.x - b.x).abs().max((a.y - b.y).abs());
        assert!(
            apart >= 5,
            "a at ({}, {}), b at ({}, {})",
            a.x,
            a.y,
            b.x,
            b.y
        );
        for p in [a, b] {
            assert!((1..WIDTH - 1).contains(&p.x) && (1..HEIGHT - 1).contains(&p.y));
            for m in &w.monsters {
                assert!(
                    (m.x - p.x).abs().max((m.y - p.y).abs()) >= 2,
                    "{p:?} next to {m:?}"
                );
            }
        }
    }

    #[test]
    fn monsters_chase_the_nearest_player() {
        let mut w = world_with(&[("a", 10, 5)], &[(2, 5), (10, 11)]);
        for _ in 0..MONSTER_EVERY {
            w.step();
        }
        assert_eq!((w.monsters[0].x, w.monsters[0].y), (3, 5));
        assert_eq!((w.monsters[1].x, w.monsters[1].y), (10, 10));
    }

    #[test]
    fn a_touch_costs_health_and_the_last_one_respawns_with_score_reset() {
        let mut w = world_with(&[("a", 5, 5)], &[(5, 5)]);
        w.players.get_mut("a").unwrap().score = Some(7);
        w.collide();
        assert_eq!(w.players["a"].health, Some(HEALTH - 1));
        // Still on the monster, but safe for a while: no second hit yet.
        w.tick += 1;
        w.collide();
        assert_eq!(w.players["a"].health, Some(HEALTH - 1));
        for _ in 1..HEALTH {
            w.tick += INVULNERABLE_TICKS;
            let p = w.players.get_mut("a").unwrap();
            (p.x, p.y) = (5, 5);
            w.collide();
        }
        let a = &w.players["a"];
        assert_eq!(
            (a.health, a.score, a.deaths),
            (Some(HEALTH), Some(0), Some(1))
        );
        assert_ne!((a.x, a.y), (5, 5), "respawned elsewhere");
    }

    #[test]
    fn the_living_score() {
        let mut w = world_with(&[("a", 1, 1)], &[(18, 10)]);
        w.monsters.clear();
        for _ in 0..SCORE_EVERY * 3 {
            w.step();
        }
        assert_eq!(w.players["a"].score, Some(3));
    }
}
