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

#[derive(Debug, Clone, Serialize)]
struct Piece {
    id: String,
    x: i32,
    y: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Debug)]
struct World {
    tick: u64,
    monsters: Vec<Piece>,
    players: HashMap<String, Piece>,
}

impl Default for World {
    fn default() -> Self {
        let monsters = (0..4)
            .map(|i| Piece {
                id: format!("m{i}"),
                x: 3 + i * 4,
                y: 2 + i * 2,
                name: None,
            })
            .collect();
        Self {
            tick: 0,
            monsters,
            players: HashMap::new(),
        }
    }
}

/// The game: monsters wander every tick; players move with
/// `{"dir": "up" | "down" | "left" | "right"}` published to `game:arena`.
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
        world.tick += 1;
        for m in &mut world.monsters {
            let (dx, dy) = [(1, 0), (-1, 0), (0, 1), (0, -1)][rand::random::<u32>() as usize % 4];
            m.x = (m.x + dx).clamp(0, WIDTH - 1);
            m.y = (m.y + dy).clamp(0, HEIGHT - 1);
        }
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
        // The first free square of the bottom rows.
        let taken = |x: i32, y: i32| world.players.values().any(|p| p.x == x && p.y == y);
        let (x, y) = (0..HEIGHT)
            .rev()
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .find(|&(x, y)| !taken(x, y))
            .unwrap_or((0, HEIGHT - 1));
        world.players.insert(
            info.client.clone(),
            Piece {
                id: info.client.clone(),
                x,
                y,
                name: info.name.clone(),
            },
        );
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
        Self::broadcast(&world, hub);
    }

    fn on_close(&self, hub: &Arc<Hub>, session: &Session, _namespace: &str) {
        let mut world = self.world();
        world.players.remove(&session.info().client);
        Self::broadcast(&world, hub);
    }
}
