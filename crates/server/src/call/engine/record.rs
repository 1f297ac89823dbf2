//! Recording the call: who may start and stop it, which streams are recorded, and the packets
//! handed out for the writer (see [`crate::record`]).
//!
//! Each recorded track gets a forwarder of its own (`PubTrack::rec`), like a subscriber that
//! wants the best layer being sent (and asks for the top one): it starts on a keyframe (asking the publisher for one), switches
//! layers only at keyframes and keeps one continuous numbering, so the writer sees one stream per
//! track. Its packets leave as [`Output::Record`]; the task hands them to the writer thread and
//! drops them (counted) if it falls behind. Nothing of this runs while the call is not recorded:
//! a track's `rec` is `None` and the forwarding path only tests it.

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use chorus_proto::call::{CallEvent, CallRecording, RecordAction, RecordingStopReason};
use chorus_proto::ws::ServerFrame;
use chorus_proto::ErrorCode;
use chorus_sfu::codec::Codec;
use chorus_sfu::{Forwarder, Layer, TrackKind};

use super::{Engine, Output, Token};
use crate::error::ApiError;
use crate::record::frames::RecPacket;
use crate::record::stream::Kind;

/// What the engine gives the recording writer.
#[derive(Debug)]
pub(crate) enum RecordOut {
    /// A recording starts.
    Start { by_uid: i64, by: String, since_ms: i64 },
    /// A stream is recorded from now on (into a file of its own).
    Stream { uid: i64, sid: u32, address: String, audio: bool, video: Option<Codec> },
    /// A packet of a recorded track.
    Packet { uid: i64, sid: u32, kind: Kind, pkt: RecPacket },
    /// An RTCP sender report of a recorded track's publisher.
    SenderReport { uid: i64, sid: u32, kind: Kind, ssrc: u32, ntp: SystemTime, rtp: u32, received: Instant },
    /// A recorded stream ended (unpublished, or its publisher left).
    StreamEnd { uid: i64, sid: u32 },
    /// The recording stops.
    Stop { reason: RecordingStopReason },
}

/// Who asks to start or stop.
pub(crate) enum RecordBy {
    /// A participant of the call (`call_record`): needs call control in it.
    Participant { uid: i64, session: u64 },
    /// A member over REST, whose right was checked against the group.
    Member { uid: i64, address: String },
}

/// The recording in progress.
pub(super) struct Recording {
    by: String,
    since_ms: i64,
    until: Instant,
    /// Streams being recorded: (publisher, sid).
    streams: HashSet<(i64, u32)>,
}

pub(super) fn kind_of(k: TrackKind) -> Kind {
    match k {
        TrackKind::Audio => Kind::Audio,
        TrackKind::Video => Kind::Video,
    }
}

impl Engine {
    /// The recording state as the wire says it.
    pub(super) fn recording_state(&self) -> CallRecording {
        match &self.recording {
            Some(r) => CallRecording { active: true, by: Some(r.by.clone()), since: Some(r.since_ms), reason: None },
            None => CallRecording::default(),
        }
    }

    /// Starts or stops the recording; answers with the state now.
    pub(super) fn record(
        &mut self,
        now: Instant,
        token: Token,
        rid: Option<String>,
        by: RecordBy,
        action: RecordAction,
        now_ms: i64,
    ) {
        let r = self.try_record(now, by, action, now_ms);
        let frame = match r {
            Ok(()) => ServerFrame::CallRecording {
                rid,
                gid: chorus_proto::GroupId(self.cfg.gid),
                recording: self.recording_state(),
            },
            Err(e) => super::wire::error_frame(rid, &e),
        };
        self.out.push_back(Output::Reply { token, frame: Box::new(frame) });
    }

    pub(super) fn try_record(
        &mut self,
        now: Instant,
        by: RecordBy,
        action: RecordAction,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let (by_uid, address) = match by {
            RecordBy::Participant { uid, session } => {
                let p = self.peers.get(&uid).filter(|p| p.session == session);
                let p = p.ok_or_else(|| ApiError::not_found("not in this call"))?;
                if !self.room.permissions(uid).is_some_and(|p| p.call_control) {
                    return Err(ApiError::forbidden("recording the call needs call control"));
                }
                (uid, p.address.clone())
            }
            RecordBy::Member { uid, address } => (uid, address),
        };
        match action {
            RecordAction::Start if self.recording.is_some() => Ok(()),
            RecordAction::Start => {
                tracing::info!(gid = self.cfg.gid, by = %address, "recording starts");
                self.out.push_back(Output::Record(Box::new(RecordOut::Start {
                    by_uid,
                    by: address.clone(),
                    since_ms: now_ms,
                })));
                self.recording = Some(Recording {
                    by: address,
                    since_ms: now_ms,
                    until: now + self.cfg.record_max,
                    streams: HashSet::new(),
                });
                self.record_sync(now);
                self.tell_recording(None);
                Ok(())
            }
            RecordAction::Stop if self.recording.is_none() => {
                Err(ApiError::new(ErrorCode::Conflict, "the call is not being recorded"))
            }
            RecordAction::Stop => {
                self.stop_recording(RecordingStopReason::Stopped);
                Ok(())
            }
        }
    }

    /// Stops the recording, if one runs, and tells everyone why.
    pub(super) fn stop_recording(&mut self, reason: RecordingStopReason) {
        let Some(r) = self.recording.take() else { return };
        tracing::info!(gid = self.cfg.gid, ?reason, streams = r.streams.len(), "recording stops");
        for p in self.peers.values_mut() {
            for t in &mut p.tracks {
                t.rec = None;
            }
        }
        self.out.push_back(Output::Record(Box::new(RecordOut::Stop { reason })));
        self.tell_recording(Some(reason));
    }

    fn tell_recording(&mut self, reason: Option<RecordingStopReason>) {
        let mut recording = self.recording_state();
        recording.reason = reason;
        let everyone: Vec<i64> = self.peers.keys().copied().collect();
        self.send(&everyone, &CallEvent::Recording { recording });
    }

    /// Keeps the recorded streams in step with the published ones (new streams start a file,
    /// ended ones close theirs) and stops at the duration limit. Runs once per flush while
    /// recording.
    pub(super) fn record_sync(&mut self, now: Instant) {
        let Some(rec) = self.recording.as_mut() else { return };
        if now >= rec.until {
            self.stop_recording(RecordingStopReason::DurationLimit);
            return;
        }
        for p in self.peers.values_mut() {
            for i in 0..p.tracks.len() {
                let sid = p.tracks[i].sid;
                if rec.streams.contains(&(p.uid, sid)) {
                    continue;
                }
                rec.streams.insert((p.uid, sid));
                let (mut audio, mut video) = (false, None);
                for t in p.tracks.iter_mut().filter(|t| t.sid == sid) {
                    match t.kind {
                        TrackKind::Audio if t.codec.eq_ignore_ascii_case("opus") => {
                            audio = true;
                            t.rec = Some(Forwarder::audio(0));
                        }
                        // VP8 goes into WebM, H.264 (WHIP publishers) into MP4; other codecs are
                        // not recorded (yet).
                        TrackKind::Video if ["vp8", "h264"].iter().any(|c| t.codec.eq_ignore_ascii_case(c)) => {
                            video = Some(if t.codec.eq_ignore_ascii_case("h264") { Codec::H264 } else { Codec::Vp8 });
                            // The best layer being sent now (see `select_layers`): the file
                            // starts on its next keyframe, asked for at once.
                            let (_, n) = t.layer_infos(now);
                            let best = t.best_sending(now, n).unwrap_or(n.saturating_sub(1));
                            let mut f = Forwarder::video(0);
                            f.set_target(Layer::new(best as u8));
                            t.rec = Some(f);
                            t.rec_asked = false;
                        }
                        _ => {}
                    }
                }
                let (uid, address) = (p.uid, p.address.clone());
                let out = RecordOut::Stream { uid, sid, address, audio, video };
                self.out.push_back(Output::Record(Box::new(out)));
            }
        }
        let peers = &self.peers;
        let ended: Vec<(i64, u32)> = rec
            .streams
            .iter()
            .filter(|(uid, sid)| !peers.get(uid).is_some_and(|p| p.tracks.iter().any(|t| t.sid == *sid)))
            .copied()
            .collect();
        for (uid, sid) in ended {
            rec.streams.remove(&(uid, sid));
            self.out.push_back(Output::Record(Box::new(RecordOut::StreamEnd { uid, sid })));
        }
    }

    /// The writer needs a keyframe of `uid`'s stream `sid` (after a loss).
    pub(super) fn record_keyframe(&mut self, now: Instant, uid: i64, sid: u32) {
        let Some(p) = self.peers.get(&uid) else { return };
        let found = p.tracks.iter().enumerate().find_map(|(ti, t)| {
            let f = t.rec.as_ref().filter(|_| t.sid == sid && t.kind == TrackKind::Video)?;
            Some((ti, f.current_layer().or(f.target_layer()).unwrap_or(Layer::LOW)))
        });
        if let Some((ti, layer)) = found {
            self.request_keyframe(now, uid, ti, layer);
        }
    }

    /// A sender report of `uid`'s publish leg: for the writer, if its track is recorded.
    pub(super) fn record_sender_report(&mut self, uid: i64, fb: str0m::media::SenderFeedback) {
        let Some(p) = self.peers.get(&uid) else { return };
        let Some(t) = p.tracks.iter().find(|t| t.mid == fb.mid && t.rec.is_some()) else { return };
        let info = fb.sender_info;
        self.out.push_back(Output::Record(Box::new(RecordOut::SenderReport {
            uid,
            sid: t.sid,
            kind: kind_of(t.kind),
            ssrc: *info.ssrc,
            ntp: info.ntp_time,
            // The low 32 bits: the RTP timestamp (str0m extends it).
            rtp: info.rtp_time.numer() as u32,
            received: fb.received_at,
        })));
    }
}
