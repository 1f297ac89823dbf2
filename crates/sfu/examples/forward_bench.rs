//! Micro benchmark of the per-packet path: how many `Forwarder::on_packet` calls one core makes
//! per second.
//!
//! One simulcast publisher (three layers, 1 / 3 / 8 packets per frame, keyframes every 60 frames)
//! fans out to ten subscribers with different target layers, which change every few seconds of
//! media time. Packets are generated in batches outside the timed section.
//!
//! Run with `cargo run --release -p chorus-sfu --example forward_bench [total_calls]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chorus_sfu::{Decision, Forwarder, Layer, PacketInfo};

const SUBSCRIBERS: usize = 10;
const BATCH: usize = 1024;
const PACKETS_PER_FRAME: [u16; 3] = [1, 3, 8];
const GOP_FRAMES: u64 = 60;

/// Generates the publisher's packets frame by frame.
struct Publisher {
    seq: [u16; 3],
    timestamp: [u32; 3],
    frame: u64,
    pending: Vec<PacketInfo>,
}

impl Publisher {
    fn new() -> Self {
        Self { seq: [100, 20_000, 40_000], timestamp: [0, 1 << 30, 1 << 31], frame: 0, pending: Vec::new() }
    }

    /// Fills `batch` with the next packets; returns the media time of the last one.
    fn fill(&mut self, batch: &mut Vec<PacketInfo>) -> Duration {
        batch.clear();
        while batch.len() < BATCH {
            if self.pending.is_empty() {
                self.next_frame();
            }
            let take = self.pending.len().min(BATCH - batch.len());
            batch.extend(self.pending.drain(..take));
        }
        Duration::from_micros(self.frame * 33_333)
    }

    fn next_frame(&mut self) {
        for (index, &count) in PACKETS_PER_FRAME.iter().enumerate() {
            let keyframe = (self.frame + 20 * index as u64) % GOP_FRAMES == 0;
            for i in 0..count {
                self.pending.push(PacketInfo {
                    ssrc: 1000 + index as u32,
                    seq: self.seq[index],
                    timestamp: self.timestamp[index],
                    marker: i + 1 == count,
                    payload_len: 1100,
                    keyframe: keyframe && i == 0,
                    layer: Layer::new(index as u8).expect("three layers"),
                });
                self.seq[index] = self.seq[index].wrapping_add(1);
            }
            self.timestamp[index] = self.timestamp[index].wrapping_add(3000);
        }
        self.frame += 1;
    }
}

fn main() {
    let total_calls: u64 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(10_000_000);
    let origin = Instant::now();
    let mut publisher = Publisher::new();
    let mut subscribers: Vec<Forwarder> = (0..SUBSCRIBERS).map(|i| Forwarder::video(5000 + i as u32)).collect();
    let mut batch = Vec::with_capacity(BATCH);
    let (mut calls, mut forwarded, mut busy) = (0u64, 0u64, Duration::ZERO);

    while calls < total_calls {
        let media_time = publisher.fill(&mut batch);
        let now = origin + media_time;
        // Every subscriber changes its target every ~5 s of media time, staggered.
        let epoch = media_time.as_secs() / 5;
        for (i, subscriber) in subscribers.iter_mut().enumerate() {
            subscriber.set_target(Layer::new(((epoch as usize + i) % 3) as u8));
            black_box(subscriber.poll_keyframe_request(now));
        }

        let started = Instant::now();
        for pkt in &batch {
            for subscriber in &mut subscribers {
                if let Decision::Forward { .. } = black_box(subscriber.on_packet(now, black_box(pkt))) {
                    forwarded += 1;
                }
            }
        }
        busy += started.elapsed();
        calls += (batch.len() * SUBSCRIBERS) as u64;
    }

    let seconds = busy.as_secs_f64();
    println!("{calls} on_packet calls ({forwarded} forwarded) in {:.3} s", seconds);
    println!(
        "{:.1} M on_packet calls/s, {:.1} M forwarded packets/s, {:.1} ns per call",
        calls as f64 / seconds / 1e6,
        forwarded as f64 / seconds / 1e6,
        seconds * 1e9 / calls as f64
    );
}
