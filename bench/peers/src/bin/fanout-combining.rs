//! Baseline fan-out server for `herald bench fanout`: see
//! herald_bench_peers::fanout, mode `Combining`.

fn main() {
    let addr = herald_bench_peers::listen_addr("127.0.0.1:9010");
    herald_bench_peers::run(herald_bench_peers::fanout::serve(
        addr,
        herald_bench_peers::fanout::Mode::Combining,
    ));
}
