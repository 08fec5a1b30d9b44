//! HA benchmark (root; builds its own two-router labs): the master of a keepalived +
//! conntrackd pair loses power (every process SIGKILLed, then its links down) while 20 TCP
//! connections exchange a line every 20 ms. Per trial: the time until the backup holds the
//! LAN gateway address, how many connections survive, and the longest time a surviving
//! connection went without an answer. 10 trials with conntrack sync, 3 without (baseline).
//!
//! Run: `cargo bench --bench ha`.

#[path = "../tests/halab/mod.rs"]
mod halab;
#[path = "../tests/lab/mod.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halab::{HaLab, Options};

const TRIALS: usize = 10;
const BASELINE_TRIALS: usize = 3;
const CONNECTIONS: usize = 20;
/// How long after the kill a connection has to answer again.
const WATCH: Duration = Duration::from_secs(8);

struct Trial {
    moved: Duration,
    survived: usize,
    /// The longest silence of a surviving connection across the failover.
    stall: Option<Duration>,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmarks run with `cargo bench --bench ha`");
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the HA benchmark needs root");
        return;
    }
    let synced: Vec<Trial> = (0..TRIALS)
        .map(|i| {
            let t = trial(Options::default());
            print_trial("sync", i, &t);
            t
        })
        .collect();
    let baseline: Vec<Trial> = (0..BASELINE_TRIALS)
        .map(|i| {
            let t = trial(Options {
                sync: false,
                ..Options::default()
            });
            print_trial("no sync", i, &t);
            t
        })
        .collect();
    report(&synced, &baseline);
}

fn print_trial(what: &str, i: usize, t: &Trial) {
    println!(
        "{what} trial {}: gateway moved in {:.3} s, {}/{CONNECTIONS} survived, longest stall {}",
        i + 1,
        t.moved.as_secs_f64(),
        t.survived,
        t.stall
            .map_or("-".to_string(), |s| format!("{:.3} s", s.as_secs_f64()))
    );
}

fn trial(options: Options) -> Trial {
    let mut lab = HaLab::new(options);
    lab.start(1);
    lab.start(2);
    lab.wait_master(1, Duration::from_secs(15))
        .expect("r1 becomes master");
    let conns = lab.connect(CONNECTIONS);
    // Let conntrackd carry the connections over before anything fails.
    std::thread::sleep(Duration::from_millis(500));
    let stop = Arc::new(AtomicBool::new(false));
    let talkers: Vec<JoinHandle<Vec<Instant>>> = conns
        .conns
        .iter()
        .map(|c| talk(c.stream.try_clone().unwrap(), stop.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    lab.power_cut(1);
    let moved = lab
        .wait_until(Duration::from_secs(5), || lab.holds_gateway(2))
        .map(|_| killed.elapsed())
        .expect("the gateway moved to r2");
    std::thread::sleep(WATCH.saturating_sub(killed.elapsed()));
    stop.store(true, Ordering::SeqCst);
    let answers: Vec<Vec<Instant>> = talkers.into_iter().map(|t| t.join().unwrap()).collect();
    let survivors: Vec<&Vec<Instant>> = answers
        .iter()
        .filter(|a| a.last().is_some_and(|t| *t > killed + moved))
        .collect();
    let stall = survivors.iter().filter_map(|a| longest_gap(a)).max();
    Trial {
        moved,
        survived: survivors.len(),
        stall,
    }
}

/// Sends a numbered line every 20 ms and waits for its echo; returns when each came back.
fn talk(mut s: TcpStream, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Instant>> {
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut answers = Vec::new();
        let mut pending = String::new();
        let mut seq = 0u64;
        'outer: while !stop.load(Ordering::SeqCst) {
            seq += 1;
            if s.write_all(format!("{seq}\n").as_bytes()).is_err() {
                break;
            }
            let want = seq.to_string();
            loop {
                if stop.load(Ordering::SeqCst) {
                    break 'outer;
                }
                let mut buf = [0u8; 256];
                match s.read(&mut buf) {
                    Ok(0) => break 'outer,
                    Ok(n) => pending.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(_) => continue,
                }
                if pending.lines().any(|l| l == want) {
                    pending.clear();
                    answers.push(Instant::now());
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        answers
    })
}

fn longest_gap(times: &[Instant]) -> Option<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).max()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(synced: &[Trial], baseline: &[Trial]) {
    let moved = |t: &[Trial]| median(t.iter().map(|t| t.moved.as_secs_f64()).collect());
    let survived = |t: &[Trial]| median(t.iter().map(|t| t.survived as f64).collect());
    let min_survived = |t: &[Trial]| t.iter().map(|t| t.survived).min().unwrap_or(0);
    let stall = |t: &[Trial]| {
        median(
            t.iter()
                .filter_map(|t| t.stall)
                .map(|s| s.as_secs_f64())
                .collect(),
        )
    };
    let worst_stall = |t: &[Trial]| {
        t.iter()
            .filter_map(|t| t.stall)
            .max()
            .map_or(f64::NAN, |s| s.as_secs_f64())
    };
    let worst_move = |t: &[Trial]| {
        t.iter()
            .map(|t| t.moved)
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64())
    };
    println!("\n### Hard kill of the master, {CONNECTIONS} connections");
    println!(
        "| | with conntrackd ({} trials) | without (baseline, {} trials) |",
        synced.len(),
        baseline.len()
    );
    println!("|---|---|---|");
    println!(
        "| gateway move, median (worst) | {:.3} s ({:.3} s) | {:.3} s ({:.3} s) |",
        moved(synced),
        worst_move(synced),
        moved(baseline),
        worst_move(baseline)
    );
    println!(
        "| connections surviving, median (fewest) | {:.0} ({}) | {:.0} ({}) |",
        survived(synced),
        min_survived(synced),
        survived(baseline),
        min_survived(baseline)
    );
    let secs = |v: f64| {
        if v.is_nan() {
            "-".to_string()
        } else {
            format!("{v:.3} s")
        }
    };
    println!(
        "| longest stall of a survivor, median (worst) | {} ({}) | {} ({}) |",
        secs(stall(synced)),
        secs(worst_stall(synced)),
        secs(stall(baseline)),
        secs(worst_stall(baseline))
    );
}
