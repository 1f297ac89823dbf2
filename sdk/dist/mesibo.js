/*! Chorus SDK: Mesibo compatibility layer, 0.1.0 — generated from sdk/src by `npm run build`; do not edit. */
"use strict";
(() => {
  // src/mesibo/constants.ts
  var MESIBO_CONSTANTS = {
    // Connection status (Mesibo_onConnectionStatus)
    MESIBO_STATUS_UNKNOWN: 0,
    MESIBO_STATUS_ONLINE: 1,
    MESIBO_STATUS_OFFLINE: 2,
    MESIBO_STATUS_SIGNOUT: 3,
    MESIBO_STATUS_AUTHFAIL: 4,
    MESIBO_STATUS_STOPPED: 5,
    MESIBO_STATUS_CONNECTING: 6,
    MESIBO_STATUS_CONNECTFAILURE: 7,
    MESIBO_STATUS_NONETWORK: 8,
    MESIBO_STATUS_ONPREMISEERROR: 9,
    MESIBO_STATUS_SUSPEND: 10,
    MESIBO_STATUS_UPDATE: 20,
    MESIBO_STATUS_MANDUPDATE: 21,
    MESIBO_STATUS_SHUTDOWN: 22,
    // Message status (Mesibo_onMessageStatus, m.status)
    MESIBO_MSGSTATUS_OUTBOX: 0,
    MESIBO_MSGSTATUS_SENT: 1,
    MESIBO_MSGSTATUS_DELIVERED: 2,
    MESIBO_MSGSTATUS_READ: 3,
    MESIBO_MSGSTATUS_RECEIVEDNEW: 18,
    MESIBO_MSGSTATUS_RECEIVEDREAD: 19,
    MESIBO_MSGSTATUS_CALLMISSED: 21,
    MESIBO_MSGSTATUS_CALLINCOMING: 22,
    MESIBO_MSGSTATUS_CALLOUTGOING: 23,
    MESIBO_MSGSTATUS_CUSTOM: 32,
    MESIBO_MSGSTATUS_E2E: 35,
    MESIBO_MSGSTATUS_DATETIME: 36,
    MESIBO_MSGSTATUS_HEADER: 37,
    MESIBO_MSGSTATUS_INVISIBLE: 38,
    MESIBO_MSGSTATUS_EMPTY: 39,
    MESIBO_MSGSTATUS_TIMESTAMP: 48,
    MESIBO_MSGSTATUS_FAIL: 128,
    MESIBO_MSGSTATUS_USEROFFLINE: 129,
    MESIBO_MSGSTATUS_INBOXFULL: 130,
    MESIBO_MSGSTATUS_INVALIDDEST: 131,
    MESIBO_MSGSTATUS_EXPIRED: 132,
    MESIBO_MSGSTATUS_BLOCKED: 136,
    MESIBO_MSGSTATUS_GROUPPAUSED: 144,
    MESIBO_MSGSTATUS_NOTMEMBER: 145,
    // Result codes
    MESIBO_RESULT_OK: 0,
    MESIBO_RESULT_FAIL: 128,
    MESIBO_RESULT_GENERROR: 129,
    MESIBO_RESULT_NOSUCHERROR: 131,
    MESIBO_RESULT_INBOXFULL: 132,
    MESIBO_RESULT_BADREQ: 133,
    MESIBO_RESULT_OVERCAPACITY: 134,
    MESIBO_RESULT_RETRYLATER: 135,
    MESIBO_RESULT_E2EERROR: 138,
    MESIBO_RESULT_TIMEOUT: 176,
    MESIBO_RESULT_CONNECTFAIL: 177,
    MESIBO_RESULT_DISCONNECTED: 178,
    MESIBO_RESULT_REQINPROGRESS: 179,
    MESIBO_RESULT_BUFFERFULL: 180,
    MESIBO_RESULT_AUTHFAIL: 192,
    MESIBO_RESULT_DENIED: 193,
    // Message flags
    MESIBO_FLAG_DELIVERYRECEIPT: 1,
    MESIBO_FLAG_READRECEIPT: 2,
    MESIBO_FLAG_TRANSIENT: 4,
    MESIBO_FLAG_PRESENCE: 8,
    MESIBO_FLAG_BROADCAST: 32,
    MESIBO_FLAG_NONBLOCKING: 524288,
    MESIBO_FLAG_DONTSEND: 2097152,
    MESIBO_FLAG_LASTMESSAGE: 8388608,
    MESIBO_FLAG_EORS: 67108864,
    MESIBO_FLAG_DEFAULT: 3,
    // Message origin
    MESIBO_ORIGIN_REALTIME: 0,
    MESIBO_ORIGIN_DBMESSAGE: 1,
    MESIBO_ORIGIN_DBSUMMARY: 2,
    MESIBO_ORIGIN_DBPENDING: 3,
    MESIBO_ORIGIN_FILTER: 4,
    MESIBO_ORIGIN_MESSAGESTATUS: 5,
    // File types
    MESIBO_FILETYPE_AUTO: 0,
    MESIBO_FILETYPE_IMAGE: 1,
    MESIBO_FILETYPE_VIDEO: 2,
    MESIBO_FILETYPE_AUDIO: 3,
    MESIBO_FILETYPE_LOCATION: 4,
    MESIBO_FILETYPE_PROFILEIMAGE: 5,
    MESIBO_FILETYPE_PROFILETHUMBNAIL: 6,
    MESIBO_FILETYPE_OTHER: 10,
    // Presence / activity
    MESIBO_PRESENCE_NONE: 0,
    MESIBO_PRESENCE_REQUEST: 0,
    MESIBO_PRESENCE_ONLINE: 1,
    MESIBO_PRESENCE_OFFLINE: 2,
    MESIBO_PRESENCE_TYPING: 3,
    MESIBO_PRESENCE_TYPINGCLEARED: 4,
    MESIBO_PRESENCE_JOINED: 10,
    MESIBO_PRESENCE_LEFT: 11,
    MESIBO_ACTIVITY_ONLINE: 1,
    MESIBO_ACTIVITY_ONLINERESP: 2,
    MESIBO_ACTIVITY_TYPING: 3,
    MESIBO_ACTIVITY_TYPINGCLEARED: 4,
    MESIBO_ACTIVITY_JOINED: 10,
    MESIBO_ACTIVITY_LEFT: 11,
    // Group flags
    MESIBO_GROUPFLAG_SENDBYSELECTED: 1,
    MESIBO_GROUPFLAG_SENDBYANYONE: 2,
    MESIBO_GROUPFLAG_AUTOADDMEMBER: 8,
    MESIBO_GROUPFLAG_RECVBYSELECTED: 16,
    MESIBO_GROUPFLAG_RECVROUNDROBIN: 32,
    MESIBO_GROUPFLAG_NOSTORAGE: 64,
    MESIBO_GROUPFLAG_RECVLOOPBACK: 128,
    MESIBO_GROUPFLAG_PUBBYSELECTED: 256,
    MESIBO_GROUPFLAG_PUBBYANYONE: 512,
    MESIBO_GROUPFLAG_SUBBYSELECTED: 4096,
    MESIBO_GROUPFLAG_SUBBYANYONE: 8192,
    MESIBO_GROUPFLAG_LISTBYSELECTED: 65536,
    MESIBO_GROUPFLAG_LISTBYANYONE: 131072,
    MESIBO_GROUPFLAG_NOSELFDELETE: 262144,
    MESIBO_GROUPFLAG_PAUSE: 134217728,
    MESIBO_GROUPFLAG_DELETE: 2147483648,
    // Member permission flags
    MESIBO_MEMBERFLAG_SEND: 1,
    MESIBO_MEMBERFLAG_RECV: 2,
    MESIBO_MEMBERFLAG_PUBL: 4,
    MESIBO_MEMBERFLAG_SUBS: 8,
    MESIBO_MEMBERFLAG_LIST: 16,
    MESIBO_MEMBERFLAG_RECORD: 32,
    MESIBO_MEMBERFLAG_ADMIN: 4096,
    MESIBO_MEMBERFLAG_NOSELFDELETE: 8192,
    MESIBO_MEMBERFLAG_SHAREDPIN: 32768,
    MESIBO_MEMBERFLAG_DELETE: 2147483648,
    MESIBO_MEMBERFLAG_ALL: 31,
    // Admin flags
    MESIBO_ADMINFLAG_MODIFY: 1,
    MESIBO_ADMINFLAG_ADDUSER: 16,
    MESIBO_ADMINFLAG_REMUSER: 32,
    MESIBO_ADMINFLAG_ADDADMIN: 64,
    MESIBO_ADMINFLAG_REMADMIN: 128,
    MESIBO_ADMINFLAG_REMOWNER: 256,
    MESIBO_ADMINFLAG_REMGROUP: 512,
    MESIBO_ADMINFLAG_CALLCONTROL: 1024,
    MESIBO_ADMINFLAG_HANGUP: 2048,
    MESIBO_ADMINFLAG_OWNER: 4096,
    MESIBO_ADMINFLAG_ADDPIN: 8192,
    MESIBO_ADMINFLAG_REMOVEPIN: 16384,
    MESIBO_ADMINFLAG_LISTPIN: 32768,
    MESIBO_OWNERFLAG_ALL: 65535,
    MESIBO_ADMINFLAG_ALL: 61439,
    // Group errors (Mesibo_onGroupError)
    MESIBO_GROUPERR_NOTMEMBER: 1,
    MESIBO_GROUPERR_PERMISSION: 2,
    MESIBO_GROUPERR_BADPIN: 3,
    MESIBO_GROUPERR_ACCESSDENIED: 4,
    MESIBO_GROUPERR_NOTSHAREDPIN: 5,
    MESIBO_GROUPERR_GENERAL: 10,
    MESIBO_GROUPERR_DELETED: 11,
    // Video resolutions (videoResolution)
    MESIBO_RESOLUTION_DEFAULT: 0,
    MESIBO_RESOLUTION_QVGA: 1,
    MESIBO_RESOLUTION_VGA: 2,
    MESIBO_RESOLUTION_HD: 3,
    MESIBO_RESOLUTION_FHD: 4,
    MESIBO_RESOLUTION_4K: 5,
    MESIBO_RESOLUTION_QQVGA: 8,
    MESIBO_RESOLUTION_180P: 9,
    MESIBO_RESOLUTION_NHD: 10,
    // Group call flags (callFlags)
    MESIBO_CALLFLAG_VALID: 1,
    MESIBO_CALLFLAG_AUDIO: 2,
    MESIBO_CALLFLAG_VIDEO: 4,
    MESIBO_CALLFLAG_DATA: 8,
    MESIBO_CALLFLAG_SCREEN: 256,
    MESIBO_CALLFLAG_SIMULCAST: 512,
    MESIBO_CALLFLAG_SIMULCAST2: 1024,
    MESIBO_CALLFLAG_4_3: 2048,
    MESIBO_CALLFLAG_RECORD: 4096,
    MESIBO_CALLFLAG_TALKING: 32768,
    MESIBO_CALLFLAG_VAD: 32768,
    MESIBO_CALLFLAG_FIXEDBITRATE: 65536,
    MESIBO_CALLFLAG_FIXEDRESOLUTION: 131072,
    MESIBO_CALLFLAG_FIXEDFRAMERATE: 262144,
    MESIBO_CALLFLAG_PREFER264: 524288,
    MESIBO_CALLFLAG_DEFAULT: 33031,
    // The same flags under the name Mesibo's headers and demos use (MESIBO_GROUPCALLFLAG_*).
    MESIBO_GROUPCALLFLAG_VALID: 1,
    MESIBO_GROUPCALLFLAG_AUDIO: 2,
    MESIBO_GROUPCALLFLAG_VIDEO: 4,
    MESIBO_GROUPCALLFLAG_DATA: 8,
    MESIBO_GROUPCALLFLAG_SCREEN: 256,
    MESIBO_GROUPCALLFLAG_SIMULCAST: 512,
    MESIBO_GROUPCALLFLAG_SIMULCAST2: 1024,
    MESIBO_GROUPCALLFLAG_4_3: 2048,
    MESIBO_GROUPCALLFLAG_RECORD: 4096,
    MESIBO_GROUPCALLFLAG_TALKING: 32768,
    MESIBO_GROUPCALLFLAG_VAD: 32768,
    MESIBO_GROUPCALLFLAG_FIXEDBITRATE: 65536,
    MESIBO_GROUPCALLFLAG_FIXEDRESOLUTION: 131072,
    MESIBO_GROUPCALLFLAG_FIXEDFRAMERATE: 262144,
    MESIBO_GROUPCALLFLAG_PREFER264: 524288,
    MESIBO_GROUPCALLFLAG_DEFAULT: 33031,
    // Call status (gen-1 on_status, 1:1 calls)
    MESIBO_CALLSTATUS_INCOMING: 1,
    MESIBO_CALLSTATUS_INPROGRESS: 2,
    MESIBO_CALLSTATUS_RINGING: 3,
    MESIBO_CALLSTATUS_ANSWER: 5,
    MESIBO_CALLSTATUS_UPDATE: 6,
    MESIBO_CALLSTATUS_DTMF: 7,
    MESIBO_CALLSTATUS_SDP: 8,
    MESIBO_CALLSTATUS_MUTE: 9,
    MESIBO_CALLSTATUS_UNMUTE: 10,
    MESIBO_CALLSTATUS_HOLD: 11,
    MESIBO_CALLSTATUS_UNHOLD: 12,
    MESIBO_CALLSTATUS_CHANNELUP: 48,
    MESIBO_CALLSTATUS_CONNECTED: 48,
    MESIBO_CALLSTATUS_QUALITY: 49,
    MESIBO_CALLSTATUS_RECONNECTING: 50,
    MESIBO_CALLSTATUS_COMPLETE: 64,
    MESIBO_CALLSTATUS_CANCEL: 65,
    MESIBO_CALLSTATUS_NOANSWER: 66,
    MESIBO_CALLSTATUS_BUSY: 67,
    MESIBO_CALLSTATUS_UNREACHABLE: 68,
    MESIBO_CALLSTATUS_OFFLINE: 69,
    MESIBO_CALLSTATUS_INVALIDDEST: 70,
    MESIBO_CALLSTATUS_INVALIDSTATE: 71,
    MESIBO_CALLSTATUS_NOCALLS: 72,
    MESIBO_CALLSTATUS_NOVIDEOCALLS: 73,
    MESIBO_CALLSTATUS_NOTALLOWED: 74,
    MESIBO_CALLSTATUS_BLOCKED: 75,
    MESIBO_CALLSTATUS_DURATIONEXCEEDED: 76,
    MESIBO_CALLSTATUS_SWITCHED: 77,
    MESIBO_CALLSTATUS_ERROR: 96,
    MESIBO_CALLSTATUS_HWERROR: 97,
    MESIBO_CALLSTATUS_NETWORKERROR: 98,
    MESIBO_CALLSTATUS_NETWORKBLOCKED: 99,
    // Group call: video sources, hangup reasons, codecs
    MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT: 0,
    MESIBOCALL_VIDEOSOURCE_CAMERAFRONT: 1,
    MESIBOCALL_VIDEOSOURCE_CAMERAREAR: 2,
    MESIBOCALL_VIDEOSOURCE_SCREEN: 4,
    MESIBOCALL_HANGUP_REASON_USER: 1,
    MESIBOCALL_HANGUP_REASON_REMOTE: 2,
    MESIBOCALL_HANGUP_REASON_ERROR: 3,
    MESIBOCALL_HANGUP_REASON_BACKGROUND: 4,
    MESIBOCALL_HANGUP_REASON_DURATION: 5,
    MESIBOCALL_CODEC_VP8: 1,
    MESIBOCALL_CODEC_VP9: 2,
    MESIBOCALL_CODEC_H264: 4,
    MESIBOCALL_CODEC_H265: 8,
    MESIBOCALL_CODEC_OPUS: 256
  };
  var C = MESIBO_CONSTANTS;
  var RESOLUTION_HEIGHT = { 1: 240, 2: 480, 3: 720, 4: 1080, 5: 2160, 8: 120, 9: 180, 10: 360 };
  var SOURCE_HEIGHT = {
    "180p": 180,
    "240p": 240,
    "360p": 360,
    "480p": 480,
    "720p": 720,
    "1080p": 1080,
    "2160p": 2160
  };

  // src/emitter.ts
  var Emitter = class {
    constructor() {
      this.listeners = /* @__PURE__ */ new Map();
    }
    /** Adds a listener; returns a function that removes it. */
    on(name, fn) {
      let set = this.listeners.get(name);
      if (!set) this.listeners.set(name, set = /* @__PURE__ */ new Set());
      set.add(fn);
      return () => this.off(name, fn);
    }
    /** Adds a listener called at most once. */
    once(name, fn) {
      const off = this.on(name, (e) => {
        off();
        fn(e);
      });
      return off;
    }
    /** Removes a listener. */
    off(name, fn) {
      this.listeners.get(name)?.delete(fn);
    }
    /** Removes every listener (of one event, or of all). */
    removeAllListeners(name) {
      if (name === void 0) this.listeners.clear();
      else this.listeners.delete(name);
    }
    emit(name, event) {
      const set = this.listeners.get(name);
      if (!set) return;
      for (const fn of [...set]) {
        try {
          fn(event);
        } catch (e) {
          console.error(`chorus: "${String(name)}" listener threw`, e);
        }
      }
    }
  };

  // src/errors.ts
  var ChorusError = class _ChorusError extends Error {
    constructor(code, message, extra) {
      super(message);
      this.name = "ChorusError";
      this.code = code;
      if (extra?.httpStatus !== void 0) this.httpStatus = extra.httpStatus;
      if (extra?.id !== void 0) this.id = extra.id;
      if (extra?.status !== void 0) this.status = extra.status;
    }
    /** The error of a server `error` frame. */
    static fromFrame(f) {
      return new _ChorusError(f.code, f.message, { id: f.id, status: f.status });
    }
  };

  // src/call.ts
  var SIMULCAST_ENCODINGS = [
    { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 15e4 },
    { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 5e5 },
    { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 15e5 }
  ];
  function streamKey(address, sid) {
    return `${sid}:${address}`;
  }
  var RemoteStream = class extends Emitter {
    /** @internal */
    constructor(call, address, info) {
      super();
      this.call = call;
      /** Received tracks. */
      this.tracks = { audio: null, video: null };
      /** The received layer (`null`: unknown or paused). */
      this.layer = null;
      /** What was asked for, while subscribed. */
      this.subscription = null;
      /** Set when the stream has ended. */
      this.ended = null;
      this._mediaStream = null;
      this.attached = /* @__PURE__ */ new Map();
      this.lastHeight = void 0;
      this.pendingHeight = void 0;
      this.address = address;
      this.sid = info.sid;
      this.info = info;
    }
    /** The publisher's display name (from the roster). */
    get name() {
      return this.call.participants.get(this.address)?.name ?? this.address;
    }
    /** True while subscribed. */
    get subscribed() {
      return this.subscription !== null;
    }
    /** A MediaStream with the received tracks (null where `MediaStream` does not exist). */
    get mediaStream() {
      if (!this._mediaStream && typeof MediaStream !== "undefined") {
        this._mediaStream = new MediaStream();
        for (const t of [this.tracks.audio, this.tracks.video]) if (t) this._mediaStream.addTrack(t);
      }
      return this._mediaStream;
    }
    /** Starts (or changes) receiving this stream. */
    subscribe(options = {}) {
      return this.call.subscribe(this.address, this.sid, options);
    }
    /** Stops receiving it. */
    unsubscribe() {
      return this.call.unsubscribe(this.address, this.sid);
    }
    /** Changes the wanted video height (keeps audio/video choice). */
    setHeight(height) {
      return this.call.setHeight(this.address, this.sid, height);
    }
    /**
     * Shows the stream in a media element (sets `srcObject`, autoplay) and,
     * for video, observes its size and sends the displayed height (in device
     * pixels, debounced) so the server forwards a fitting layer. Returns a
     * function that detaches it.
     */
    attach(el, options = {}) {
      this.detach(el);
      const ms = this.mediaStream;
      if (ms) el.srcObject = ms;
      el.autoplay = true;
      if ("playsInline" in el) el.playsInline = true;
      let cleanup = () => {
      };
      const RO = globalThis.ResizeObserver;
      if (options.adaptive !== false && RO && typeof HTMLVideoElement !== "undefined" && el instanceof HTMLVideoElement) {
        const wait = options.debounce ?? 300;
        let timer;
        const measure = () => {
          timer = void 0;
          const dpr = globalThis.devicePixelRatio ?? 1;
          const h = Math.round(el.clientHeight * dpr);
          if (h <= 0) return;
          this.wantHeight(Math.min(8192, h));
        };
        const ro = new RO(() => {
          clearTimeout(timer);
          timer = setTimeout(measure, wait);
        });
        ro.observe(el);
        cleanup = () => {
          clearTimeout(timer);
          ro.disconnect();
        };
      }
      const detach = () => {
        cleanup();
        if (this.attached.get(el) === detach) this.attached.delete(el);
        if (el.srcObject === ms) el.srcObject = null;
      };
      this.attached.set(el, detach);
      return detach;
    }
    /** Detaches one element (or all). */
    detach(el) {
      if (el) this.attached.get(el)?.();
      else for (const d of [...this.attached.values()]) d();
    }
    wantHeight(h) {
      if (!this.subscribed) {
        this.pendingHeight = h;
        return;
      }
      if (h === this.lastHeight) return;
      this.lastHeight = h;
      this.setHeight(h).catch((e) => this.call._reportError(e));
    }
    /** @internal */
    _setTrack(ev, kind, removed) {
      const old = this.tracks[kind];
      if (old && this._mediaStream) this._mediaStream.removeTrack(old);
      this.tracks[kind] = ev ? ev.track : null;
      if (ev && this._mediaStream) this._mediaStream.addTrack(ev.track);
      if (removed) this.emit("track-removed", removed);
      if (ev) this.emit("track", ev);
    }
    /** @internal */
    _muted(m) {
      this.info = { ...this.info, muted: m };
      this.emit("muted", m);
    }
    /** @internal */
    _layer(l) {
      this.layer = l;
      this.emit("layer", l);
    }
    /** @internal */
    _end(reason) {
      this.ended = reason;
      this.subscription = null;
      this.detach();
      this.emit("ended", reason);
    }
    /** @internal */
    _subscribed(s) {
      this.subscription = s;
      if (s && s.height !== void 0) this.lastHeight = s.height;
      if (!s) this.lastHeight = void 0;
      const pending = this.pendingHeight;
      this.pendingHeight = void 0;
      if (s && pending !== void 0 && pending !== this.lastHeight) this.wantHeight(pending);
    }
  };
  var LocalStream = class {
    /** @internal */
    constructor(call, info, audio, video, options) {
      this.call = call;
      /** The last `layers` state (one flag per simulcast encoding), if any. */
      this.activeLayers = null;
      this.sid = info.sid;
      this.info = info;
      this._audioTransceiver = audio;
      this._videoTransceiver = video;
      this.audioTrack = options.audio ?? null;
      this.videoTrack = options.video ?? null;
      this._options = options;
    }
    /** The sendonly audio transceiver on the publish connection (a new one after a rejoin). */
    get audioTransceiver() {
      return this._audioTransceiver;
    }
    /** The sendonly video transceiver on the publish connection (a new one after a rejoin). */
    get videoTransceiver() {
      return this._videoTransceiver;
    }
    /** @internal Published again (after a rejoin) on new transceivers. */
    _rebind(info, audio, video) {
      this.info = info;
      this._audioTransceiver = audio;
      this._videoTransceiver = video;
      this.activeLayers = null;
    }
    /** Mutes or unmutes (absent: unchanged). */
    mute(m) {
      return this.call.mute(this.sid, m);
    }
    /** Stops publishing it. */
    unpublish() {
      return this.call.unpublish(this.sid);
    }
  };
  var GroupCall = class extends Emitter {
    /** @internal Use `ChorusClient.joinCall`. */
    constructor(client, joined, options = {}) {
      super();
      /** Your admin-mute state. */
      this.adminMuted = { audio: false, video: false };
      /** Everyone in the call (you included), by address. */
      this.participants = /* @__PURE__ */ new Map();
      /** Others' streams, by `sid:address` (see `stream()`). */
      this.streams = /* @__PURE__ */ new Map();
      /** Your published streams, by sid. */
      this.published = /* @__PURE__ */ new Map();
      /** Active-speaker order, most recent first. */
      this.speakers = [];
      /** Set once you are out of the call. */
      this.leftReason = null;
      /**
       * Live mode: how many are in the audience (from `call_joined`, then `audience` events, at most
       * one a second; 0 when the call is not live). The audience is not in `participants`.
       */
      this.audienceCount = 0;
      /** Live mode: your hand is raised (audience only; see `raiseHand`). */
      this.handRaised = false;
      /**
       * Live mode, for hosts (call control): the audience members with a hand raised, address →
       * name, oldest first (from `hand` events, and the raised hands of `audience()` pages: ask for
       * `audience({ hands: true })` after joining to learn of hands raised before).
       */
      this.hands = /* @__PURE__ */ new Map();
      this.pubPc = null;
      this.subPc = null;
      this.pubChain = Promise.resolve();
      this.subChain = Promise.resolve();
      this.paramChain = Promise.resolve();
      this.midMap = /* @__PURE__ */ new Map();
      this.bindings = /* @__PURE__ */ new Map();
      this._state = "joined";
      /** Why the call is being joined again (while `reconnecting`). */
      this.lostReason = "lost";
      /** A `call_join` of the rejoin is on its way; call frames wait in `rejoinBuffer`. */
      this.rejoining = false;
      this.rejoinBuffer = [];
      this.rejoinRetries = 0;
      /** ICE trouble: per connection, the 2 s timer since it went disconnected/failed. */
      this.iceTimers = /* @__PURE__ */ new Map();
      this.restarting = null;
      this.lastRestart = -Infinity;
      this.client = client;
      this.options = options;
      this.gid = joined.gid;
      this.address = joined.address;
      this.permissions = { ...joined.permissions };
      this.settings = { ...joined.settings };
      this.recording = joined.recording ? { ...joined.recording } : { active: false };
      this.audienceCount = joined.audience ?? 0;
      this.iceServers = iceServersOf(joined);
      for (const p of joined.participants) {
        const copy = cloneParticipant(p);
        this.participants.set(p.address, copy);
        if (p.address === this.address) this.adminMuted = { ...p.admin_muted };
        else for (const s of copy.streams) this.streams.set(streamKey(p.address, s.sid), new RemoteStream(this, p.address, s));
      }
    }
    /** True until you left (or were removed, or the call was lost and not recovered); also while `reconnecting`. */
    get active() {
      return this.leftReason === null;
    }
    /**
     * `joined`; `reconnecting` between the `reconnecting` and `reconnected` events (requests such
     * as `publish` fail with `disconnected` meanwhile); `left` once out of the call (`left` event).
     */
    get state() {
      return this.active ? this._state : "left";
    }
    /** The call is a live stream: those who may publish are on stage, the others are the audience. */
    get live() {
      return !!this.settings.live;
    }
    /** Live mode: you are on stage (you may publish); false in the audience and in calls that are not live. */
    get onStage() {
      return this.live && this.permissions.publish;
    }
    /** Others' stream `(address, sid)`, if known. */
    stream(address, sid) {
      return this.streams.get(streamKey(address, sid));
    }
    /** The publish and subscribe peer connections (null until used). */
    get peerConnections() {
      return { publish: this.pubPc, subscribe: this.subPc };
    }
    /** @internal Called once after construction. */
    _start() {
      if (this.options.autoSubscribe) for (const s of this.streams.values()) this.autoSubscribe(s);
    }
    // ------------------------------------------------------------ peer connections
    newPc() {
      const Ctor = this.options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
      if (!Ctor) throw new ChorusError("webrtc", "RTCPeerConnection is not available");
      const config = { ...this.options.rtcConfig ?? {} };
      if (this.iceServers.length) config.iceServers = [...config.iceServers ?? [], ...this.iceServers];
      return new Ctor(config);
    }
    getPubPc() {
      if (!this.pubPc) {
        this.pubPc = this.newPc();
        this.watchIce(this.pubPc);
      }
      return this.pubPc;
    }
    getSubPc() {
      if (!this.subPc) {
        const pc = this.newPc();
        this.watchIce(pc);
        pc.ontrack = (e) => {
          const mid = e.transceiver?.mid;
          if (mid) this.bind(mid, e.track);
        };
        this.subPc = pc;
      }
      return this.subPc;
    }
    serial(chain, fn) {
      const prev = chain === "pub" ? this.pubChain : chain === "sub" ? this.subChain : this.paramChain;
      const next = prev.then(fn, fn);
      const settled = next.catch(() => void 0);
      if (chain === "pub") this.pubChain = settled;
      else if (chain === "sub") this.subChain = settled;
      else this.paramChain = settled;
      return next;
    }
    ensureActive() {
      if (!this.active) throw new ChorusError("state", "not in the call");
      if (this._state === "reconnecting") throw new ChorusError("disconnected", "reconnecting to the call");
    }
    // ------------------------------------------------------------ ICE restart
    watchIce(pc) {
      const on = () => this.iceChanged(pc);
      if (typeof pc.addEventListener === "function") pc.addEventListener("iceconnectionstatechange", on);
      else pc.oniceconnectionstatechange = on;
    }
    iceChanged(pc) {
      if (pc !== this.pubPc && pc !== this.subPc) return;
      if (iceBad(pc)) {
        if (this.iceTimers.has(pc) || !this.active || this._state !== "joined") return;
        this.iceTimers.set(
          pc,
          setTimeout(() => {
            this.iceTimers.delete(pc);
            if ((pc === this.pubPc || pc === this.subPc) && iceBad(pc)) this.autoRestart();
          }, ICE_TROUBLE_MS)
        );
      } else {
        clearTimeout(this.iceTimers.get(pc));
        this.iceTimers.delete(pc);
      }
    }
    /** A restart because of trouble: one at a time, at most one per 5 s. */
    autoRestart() {
      if (!this.active || this._state !== "joined" || this.restarting || this.restartTimer !== void 0) return;
      const wait = this.lastRestart + RESTART_EVERY_MS - Date.now();
      if (wait > 0) {
        this.restartTimer = setTimeout(() => {
          this.restartTimer = void 0;
          if (this.iceTrouble()) this.autoRestart();
        }, wait);
        return;
      }
      this.restart(true).catch((e) => {
        if (!(e instanceof ChorusError && (e.code === "disconnected" || e.code === "state"))) this._reportError(e);
      });
    }
    /** Either connection is ICE-disconnected or failed (or, with `checking`, still checking). */
    iceTrouble(checking = false) {
      return [this.pubPc, this.subPc].some((pc) => !!pc && (iceBad(pc) || checking && pc.iceConnectionState === "checking"));
    }
    /**
     * Restarts ICE on both connections now (docs/protocol.md §15.10): sends `call_restart` with a
     * publish offer carrying new ICE credentials (none when you publish nothing) and applies the
     * answer; the subscribe connection's new offer follows as a `call_offer`, answered by itself.
     * Done by itself when a connection has been ICE-disconnected or failed for 2 s (and again while
     * one is not connected 5 s after the answer, at most once per 5 s). Joins a restart in
     * progress; waits for a publish or unpublish negotiation in flight. Resolves once the server
     * answered (`ice-restart` event).
     */
    restartIce() {
      try {
        this.ensureActive();
      } catch (e) {
        return Promise.reject(e);
      }
      return this.restart(false);
    }
    restart(automatic) {
      if (this.restarting) return this.restarting;
      clearTimeout(this.restartTimer);
      this.restartTimer = void 0;
      const p = this.serial("pub", () => this.doRestart(automatic)).finally(() => {
        if (this.restarting === p) this.restarting = null;
      });
      this.restarting = p;
      return p;
    }
    async doRestart(automatic) {
      this.ensureActive();
      const pc = this.pubPc;
      let sdp;
      if (pc && pc.remoteDescription && pc.signalingState === "stable") {
        const offer = await pc.createOffer({ iceRestart: true });
        await pc.setLocalDescription(offer);
        sdp = pc.localDescription?.sdp ?? offer.sdp;
      }
      const frame = sdp ? { type: "call_restart", sdp } : { type: "call_restart" };
      try {
        const res = await this.client.request(frame);
        if (res.sdp && pc && pc === this.pubPc && pc.signalingState === "have-local-offer") {
          await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
        }
      } catch (e) {
        if (pc && pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
        }
        throw e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e));
      }
      this.lastRestart = Date.now();
      this.emit("ice-restart", { automatic });
      clearTimeout(this.restartTimer);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = void 0;
        if (this.iceTrouble(true)) this.autoRestart();
      }, RESTART_EVERY_MS);
    }
    stopIceWatch() {
      for (const t of this.iceTimers.values()) clearTimeout(t);
      this.iceTimers.clear();
      clearTimeout(this.restartTimer);
      this.restartTimer = void 0;
      this.restarting = null;
      this.lastRestart = -Infinity;
    }
    // ------------------------------------------------------------ publishing
    /**
     * Publishes stream `sid` (0 the camera, 1.. screens): adds sendonly
     * transceivers, offers, sends `call_publish` with their mids and applies
     * the answer. A camera video is sent as simulcast `q`/`h`/`f` when the
     * room allows it.
     */
    publish(sid, options) {
      return this.serial("pub", async () => {
        this.ensureActive();
        if (!options.audio && !options.video) throw new ChorusError("bad_request", "nothing to publish");
        if (this.published.has(sid)) throw new ChorusError("conflict", `stream ${sid} is already published`);
        return this.publishNow(sid, { ...options }, null);
      });
    }
    /** Offers and sends `call_publish` (in the `pub` chain); `again`: the stream republished after a rejoin. */
    async publishNow(sid, options, again) {
      const pc = this.getPubPc();
      const simulcast = !!options.video && !options.screen && options.simulcast !== false && this.settings.simulcast;
      const at = options.audio ? pc.addTransceiver(options.audio, { direction: "sendonly" }) : null;
      const vt = options.video ? pc.addTransceiver(
        options.video,
        simulcast ? { direction: "sendonly", sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) } : { direction: "sendonly" }
      ) : null;
      const muted = { audio: !!options.muted?.audio, video: !!options.muted?.video };
      if (options.audio && muted.audio) options.audio.enabled = false;
      if (options.video && muted.video) options.video.enabled = false;
      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
        const frame = {
          type: "call_publish",
          sid,
          audio: !!at,
          video: !!vt,
          screen: !!options.screen,
          sdp
        };
        if (simulcast) frame.rids = SIMULCAST_ENCODINGS.map((e) => e.rid);
        const height = options.height ?? trackHeight(options.video);
        if (vt && height) frame.height = Math.min(8192, Math.max(1, Math.round(height)));
        if (muted.audio || muted.video) frame.muted = muted;
        if (at) frame.audio_mid = at.mid;
        if (vt) frame.video_mid = vt.mid;
        const res = await this.client.request(frame);
        if (pc !== this.pubPc) throw new ChorusError("disconnected", "the call was lost");
        await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
        let ls;
        if (again) {
          ls = again;
          ls._rebind(res.stream, at, vt);
        } else {
          ls = new LocalStream(this, res.stream, at, vt, options);
        }
        this.published.set(sid, ls);
        const me = this.participants.get(this.address);
        if (me) me.streams = [...me.streams.filter((s) => s.sid !== sid), res.stream];
        return ls;
      } catch (e) {
        if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
        }
        stopTransceiver(at);
        stopTransceiver(vt);
        throw e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e));
      }
    }
    /** Stops publishing stream `sid` (renegotiates the publish connection). */
    unpublish(sid) {
      return this.serial("pub", async () => {
        this.ensureActive();
        const ls = this.published.get(sid);
        if (!ls) throw new ChorusError("not_found", `stream ${sid} is not published`);
        this.published.delete(sid);
        this.dropOwnStream(sid);
        deactivateTransceiver(ls.audioTransceiver);
        deactivateTransceiver(ls.videoTransceiver);
        const pc = this.getPubPc();
        let sdp;
        try {
          const offer = await pc.createOffer();
          await pc.setLocalDescription(offer);
          sdp = pc.localDescription?.sdp ?? offer.sdp;
        } catch {
          sdp = void 0;
        }
        try {
          const res = await this.client.request(sdp ? { type: "call_unpublish", sid, sdp } : { type: "call_unpublish", sid });
          if (res.sdp && pc.signalingState === "have-local-offer") {
            await pc.setRemoteDescription({ type: "answer", sdp: res.sdp });
          }
        } catch (e) {
          if (pc.signalingState === "have-local-offer") {
            await pc.setLocalDescription({ type: "rollback" }).catch(() => void 0);
          }
          throw e;
        }
      });
    }
    /** Mutes or unmutes your stream `sid` (also sets the local tracks' `enabled`). */
    async mute(sid, m) {
      this.ensureActive();
      const ls = this.published.get(sid);
      if (ls) {
        if (m.audio !== void 0 && ls.audioTrack) ls.audioTrack.enabled = !m.audio;
        if (m.video !== void 0 && ls.videoTrack) ls.videoTrack.enabled = !m.video;
      }
      const frame = { type: "call_mute", sid };
      if (m.audio !== void 0) frame.audio = m.audio;
      if (m.video !== void 0) frame.video = m.video;
      await this.client.request(frame);
      if (ls) ls.info = { ...ls.info, muted: { audio: m.audio ?? ls.info.muted.audio, video: m.video ?? ls.info.muted.video } };
    }
    /** An admin action: `mute`/`unmute` (address, audio/video), `mute_all`/`unmute_all`, `hangup` (address, sid), `remove` (address). */
    async admin(action, target = {}) {
      this.ensureActive();
      const frame = { type: "call_admin", action };
      if (target.address !== void 0) frame.address = target.address;
      if (target.sid !== void 0) frame.sid = target.sid;
      if (target.audio) frame.audio = true;
      if (target.video) frame.video = true;
      await this.client.request(frame);
    }
    /**
     * Starts or stops recording the call (needs call control, as an admin). Starting a call that
     * records already changes nothing; stopping one that does not fails with `conflict`. Resolves
     * with the recording state; everyone in the call also gets a `recording` event. When it stops,
     * each participant's file enters the group's media library.
     */
    async record(action) {
      this.ensureActive();
      const answer = await this.client.request({ type: "call_record", action });
      this.recording = { ...answer.recording };
      return this.recording;
    }
    // ------------------------------------------------------------ live mode
    /**
     * Live mode: raises (or lowers) your hand; the hosts with call control see it. Only the
     * audience raises hands (on stage: `conflict`). Being brought on stage lowers it.
     */
    async raiseHand(raised = true) {
      this.ensureActive();
      await this.client.request({ type: "call_hand", raised });
      this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, raised);
    }
    /**
     * Live mode: a page of the audience, in the order they joined (needs the list permission;
     * `conflict` when the call is not live). Pass the page's `next` as `after` for the next one.
     * Raised hands it lists join `hands` (how a host who joins late learns of them).
     */
    async audience(options = {}) {
      this.ensureActive();
      const frame = { type: "call_audience" };
      if (options.after !== void 0) frame.after = options.after;
      if (options.limit !== void 0) frame.limit = options.limit;
      if (options.hands) frame.hands = true;
      const res = await this.client.request(frame);
      this.setAudienceCount(res.count);
      for (const m of res.members) if (m.hand && m.address !== this.address) this.setHand(m.address, m.name, true);
      const page = { count: res.count, members: res.members.map((m) => ({ ...m })) };
      if (res.next !== void 0 && res.next !== null) page.next = res.next;
      return page;
    }
    /**
     * Live mode, for hosts (call control): brings an audience member on stage: it may publish for
     * this call, and everyone sees it join (`participant-joined`).
     */
    bringOnStage(address) {
      return this.admin("stage", { address });
    }
    /**
     * Live mode, for hosts: sends a member brought on stage back to the audience: its streams end
     * and it leaves the roster (`participant-left` with reason `off_stage`).
     */
    sendBackstage(address) {
      return this.admin("unstage", { address });
    }
    setAudienceCount(count) {
      if (count === this.audienceCount) return;
      this.audienceCount = count;
      this.emit("audience", count);
    }
    setHand(address, name, raised) {
      if (address === this.address) {
        if (this.handRaised === raised) return;
        this.handRaised = raised;
      } else if (raised) {
        if (this.hands.get(address) === name) return;
        this.hands.set(address, name);
      } else if (!this.hands.delete(address)) {
        return;
      }
      this.emit("hand", { address, name, raised });
    }
    /** Your publish right changed in a live call: on stage, or back in the audience. */
    stageChanged(onStage) {
      if (onStage) {
        if (this.handRaised) this.setHand(this.address, this.participants.get(this.address)?.name ?? this.address, false);
      } else {
        for (const [sid, ls] of [...this.published]) {
          this.published.delete(sid);
          this.dropOwnStream(sid);
          deactivateTransceiver(ls.audioTransceiver);
          deactivateTransceiver(ls.videoTransceiver);
          this.emit("stream-unpublished", { address: this.address, sid, reason: "permission_revoked", local: true, stream: ls });
        }
      }
      this.emit("stage", { onStage });
    }
    applyLayers(sid, active) {
      const ls = this.published.get(sid);
      if (ls) ls.activeLayers = [...active];
      const sender = ls?.videoTransceiver?.sender;
      if (!sender) return Promise.resolve();
      return this.serial("param", async () => {
        const params = sender.getParameters();
        const enc = params.encodings ?? [];
        let changed = false;
        enc.forEach((e, i) => {
          if (i < active.length && e.active !== active[i]) {
            e.active = active[i];
            changed = true;
          }
        });
        if (changed) await sender.setParameters(params);
      });
    }
    // ------------------------------------------------------------ subscribing
    /** Receives `address`'s stream `sid` (send again, or `setHeight`, to change it). */
    async subscribe(address, sid, options = {}) {
      this.ensureActive();
      const frame = { type: "call_subscribe", address, sid };
      if (options.audio === false) frame.audio = false;
      if (options.video === false) frame.video = false;
      if (options.height !== void 0) frame.height = options.height;
      this.getSubPc();
      await this.client.request(frame);
      let rs = this.stream(address, sid);
      if (!rs) {
        rs = new RemoteStream(this, address, placeholderStream(sid));
        this.streams.set(streamKey(address, sid), rs);
      }
      rs._subscribed({ audio: options.audio ?? true, video: options.video ?? true, height: options.height ?? null });
    }
    /** Changes the height a subscribed video is shown at (the server picks the layer). */
    async setHeight(address, sid, height) {
      const rs = this.stream(address, sid);
      const sub = rs?.subscription ?? {};
      await this.subscribe(address, sid, { audio: sub.audio ?? true, video: sub.video ?? true, height });
    }
    /** Stops receiving `address`'s stream `sid`. */
    async unsubscribe(address, sid) {
      this.ensureActive();
      await this.client.request({ type: "call_unsubscribe", address, sid });
      this.stream(address, sid)?._subscribed(null);
    }
    autoSubscribe(rs) {
      const a = this.options.autoSubscribe;
      if (!a || !this.permissions.subscribe) return;
      const opts = typeof a === "object" ? a : {};
      this.subscribe(rs.address, rs.sid, opts).catch((e) => this._reportError(e));
    }
    onOffer(f) {
      this.serial("sub", () => this.answerOffer(f)).catch((e) => this._reportError(e));
    }
    async answerOffer(f) {
      if (!this.active) return;
      const pc = this.getSubPc();
      this.midMap = new Map(f.tracks.map((t) => [t.mid, t]));
      await pc.setRemoteDescription({ type: "offer", sdp: f.sdp });
      this.reconcile(pc);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      const sdp = pc.localDescription?.sdp ?? answer.sdp ?? "";
      if (!this.active || pc !== this.subPc) return;
      await this.client.request({ type: "call_answer", sdp });
    }
    /** Binds every listed media line to its track, unbinds lines no longer listed. */
    reconcile(pc) {
      for (const mid of [...this.bindings.keys()]) if (!this.midMap.has(mid)) this.unbind(mid);
      for (const t of pc.getTransceivers()) {
        if (t.mid && this.midMap.has(t.mid) && t.receiver?.track) this.bind(t.mid, t.receiver.track);
      }
    }
    bind(mid, track) {
      const t = this.midMap.get(mid);
      if (!t) return;
      const key = `${t.kind}:${t.sid}:${t.publisher}`;
      const old = this.bindings.get(mid);
      if (old && old.key === key && old.track === track) return;
      if (old) this.unbind(mid);
      let rs = this.stream(t.publisher, t.sid);
      if (!rs) {
        rs = new RemoteStream(this, t.publisher, placeholderStream(t.sid));
        this.streams.set(streamKey(t.publisher, t.sid), rs);
      }
      const event = { track, publisher: t.publisher, sid: t.sid, kind: t.kind, mid, stream: rs };
      this.bindings.set(mid, { key, track, event });
      rs._setTrack(event, t.kind);
      this.emit("track", event);
    }
    unbind(mid) {
      const b = this.bindings.get(mid);
      if (!b) return;
      this.bindings.delete(mid);
      const rs = b.event.stream;
      if (rs.tracks[b.event.kind] === b.track) rs._setTrack(null, b.event.kind, b.event);
      this.emit("track-removed", b.event);
    }
    // ------------------------------------------------------------ leaving
    /** Leaves the call. */
    async leave() {
      if (!this.active) return;
      try {
        await this.client.request({ type: "call_leave" });
      } catch {
      }
      this._end("left");
    }
    /** @internal Ends the call locally: closes both connections and emits `left` once. */
    _end(reason, by) {
      if (!this.active) return;
      this.leftReason = reason;
      this.stopIceWatch();
      clearTimeout(this.rejoinTimer);
      this.rejoinBuffer = [];
      for (const rs of this.streams.values()) rs.detach();
      this.closePcs();
      this.client._callEnded(this);
      this.emit("left", by !== void 0 ? { reason, by } : { reason });
    }
    closePcs() {
      for (const pc of [this.pubPc, this.subPc]) {
        try {
          pc?.close();
        } catch {
        }
      }
    }
    // ------------------------------------------------------------ recovering (§15.10)
    /**
     * @internal The WebSocket dropped. Returns true when the call stays (reconnecting, to be joined
     * again after the next `synced`), false when it ended (`recover: false`).
     */
    _connectionLost() {
      if (!this.active) return false;
      if (this.options.recover === false) {
        this._end("lost");
        return false;
      }
      this.rejoining = false;
      this.suspend("lost");
      return true;
    }
    /** @internal The WebSocket is back (`synced`): join again if the call was lost. */
    _connectionBack() {
      if (this.active && this._state === "reconnecting" && !this.rejoining) void this.rejoin();
    }
    /** Out of the call for now: media stops, what to restore is kept. */
    suspend(reason) {
      if (this._state === "reconnecting") return;
      this._state = "reconnecting";
      this.lostReason = reason;
      this.stopIceWatch();
      for (const mid of [...this.bindings.keys()]) this.unbind(mid);
      this.midMap = /* @__PURE__ */ new Map();
      this.closePcs();
      this.pubPc = null;
      this.subPc = null;
      this.emit("reconnecting", { reason });
    }
    async rejoin() {
      clearTimeout(this.rejoinTimer);
      this.rejoinTimer = void 0;
      this.rejoining = true;
      this.rejoinBuffer = [];
      let joined;
      try {
        joined = await this.client.request({ type: "call_join", gid: this.gid });
      } catch (e) {
        this.rejoining = false;
        if (!this.active || this._state !== "reconnecting") return;
        const code = e instanceof ChorusError ? e.code : "";
        if (code === "disconnected") return;
        if ((code === "timeout" || code === "rate_limited") && this.rejoinRetries < REJOIN_RETRIES) {
          this.rejoinRetries++;
          this.rejoinTimer = setTimeout(() => this._connectionBack(), REJOIN_RETRY_MS);
          return;
        }
        this._reportError(e);
        this._end(this.lostReason);
        return;
      }
      this.rejoining = false;
      if (!this.active || this.client.groupCall !== this) return;
      this.rejoinRetries = 0;
      const subs = /* @__PURE__ */ new Map();
      for (const [key, rs] of this.streams) if (rs.subscription) subs.set(key, { ...rs.subscription });
      const mine = [...this.published.values()];
      this._state = "joined";
      this.applyJoined(joined);
      const buffered = this.rejoinBuffer.filter((f) => f.gid === this.gid);
      this.rejoinBuffer = [];
      for (const f of buffered) this._handle(f);
      const republished = [];
      const work = [];
      for (const ls of mine) {
        const options = { ...ls._options, muted: { ...ls.info.muted } };
        work.push(
          this.serial("pub", () => {
            this.ensureActive();
            return this.publishNow(ls.sid, options, ls);
          }).then(
            () => republished.push(ls.sid),
            (e) => {
              if (!this.active || this._state !== "joined" || this.published.get(ls.sid) !== ls) return;
              this.published.delete(ls.sid);
              this.dropOwnStream(ls.sid);
              this._reportError(e);
              const reason = e instanceof ChorusError && e.code === "forbidden" ? "permission_revoked" : "unpublished";
              this.emit("stream-unpublished", { address: this.address, sid: ls.sid, reason, local: true, stream: ls });
            }
          )
        );
      }
      for (const [key, opts] of subs) {
        const rs = this.streams.get(key);
        if (!rs || rs.ended !== null || !this.permissions.subscribe) continue;
        work.push(
          this.subscribe(rs.address, rs.sid, opts).catch((e) => {
            if (this.active && this._state === "joined") this._reportError(e);
          })
        );
      }
      await Promise.all(work);
      if (this.active && this._state === "joined") this.emit("reconnected", { republished: republished.sort((a, b) => a - b) });
    }
    /** The roster of a `call_joined` after a rejoin, told as the changes since before. */
    applyJoined(joined) {
      this.permissions = { ...joined.permissions };
      this.settings = { ...joined.settings };
      this.recording = joined.recording ? { ...joined.recording } : { active: false };
      this.setAudienceCount(joined.audience ?? 0);
      this.iceServers = iceServersOf(joined);
      const before = new Map(this.participants);
      this.participants.clear();
      const now = /* @__PURE__ */ new Map();
      for (const p of joined.participants) now.set(p.address, cloneParticipant(p));
      for (const rs of [...this.streams.values()]) {
        const p = now.get(rs.address);
        if (!p || !p.streams.some((x) => x.sid === rs.sid)) this.removeStream(rs, p ? "unpublished" : "owner_left");
      }
      for (const [address, p] of before) {
        if (address !== this.address && !now.has(address)) this.emit("participant-left", { participant: p, reason: "left" });
      }
      for (const [address, p] of now) {
        this.participants.set(address, p);
        if (address === this.address) {
          this.adminMuted = { ...p.admin_muted };
          p.streams = [];
          continue;
        }
        if (!before.has(address)) this.emit("participant-joined", p);
        for (const st of p.streams) {
          const rs = this.stream(address, st.sid);
          if (!rs) {
            this.addStream(address, st);
            continue;
          }
          const mutedChanged = rs.info.muted.audio !== st.muted.audio || rs.info.muted.video !== st.muted.video;
          rs.info = { ...st, muted: { ...st.muted } };
          if (mutedChanged) {
            rs._muted({ ...st.muted });
            this.emit("muted", { address, sid: st.sid, muted: { ...st.muted } });
          }
        }
      }
    }
    /** @internal */
    _reportError(e) {
      this.emit("error", e instanceof ChorusError ? e : new ChorusError("webrtc", errText(e)));
    }
    // ------------------------------------------------------------ server frames
    /** @internal Routes `call_offer` and `call_event` frames. */
    _handle(f) {
      if (!this.active) return;
      if (f.gid !== this.gid) return;
      if (this._state === "reconnecting") {
        if (this.rejoining) this.rejoinBuffer.push(f);
        return;
      }
      if (f.type === "call_offer") return this.onOffer(f);
      this.emit("event", f);
      this.onEvent(f);
    }
    dropOwnStream(sid) {
      const me = this.participants.get(this.address);
      if (me) me.streams = me.streams.filter((s) => s.sid !== sid);
    }
    onEvent(e) {
      switch (e.event) {
        case "joined": {
          const p = cloneParticipant(e.participant);
          this.participants.set(p.address, p);
          if (this.hands.has(p.address)) this.setHand(p.address, this.hands.get(p.address) ?? p.name, false);
          this.emit("participant-joined", p);
          if (p.address !== this.address) for (const s of p.streams) this.addStream(p.address, s);
          return;
        }
        case "updated": {
          const p = this.participants.get(e.address);
          if (p) {
            p.permissions = { ...e.permissions };
            p.admin_muted = { ...e.admin_muted };
          }
          let stage = null;
          if (e.address === this.address) {
            const could = this.permissions.publish;
            this.permissions = { ...e.permissions };
            this.adminMuted = { ...e.admin_muted };
            if (this.live && could !== e.permissions.publish) stage = e.permissions.publish;
          }
          if (p) this.emit("participant-updated", p);
          if (stage !== null) this.stageChanged(stage);
          return;
        }
        case "left": {
          if (e.address === this.address) {
            if (e.reason === "off_stage") return;
            if ((e.reason === "lost" || e.reason === "slow") && this.options.recover !== false && this.client.synced) {
              this.suspend(e.reason);
              this._connectionBack();
              return;
            }
            this._end(e.reason, e.by);
            return;
          }
          const p = this.participants.get(e.address);
          for (const rs of [...this.streams.values()]) {
            if (rs.address === e.address) this.removeStream(rs, "owner_left");
          }
          this.participants.delete(e.address);
          if (p) this.emit("participant-left", e.by !== void 0 ? { participant: p, reason: e.reason, by: e.by } : { participant: p, reason: e.reason });
          return;
        }
        case "published": {
          const p = this.participants.get(e.address);
          if (p) p.streams = [...p.streams.filter((s) => s.sid !== e.stream.sid), { ...e.stream }];
          if (e.address !== this.address) this.addStream(e.address, e.stream);
          return;
        }
        case "muted": {
          const p = this.participants.get(e.address);
          const s = p?.streams.find((x) => x.sid === e.sid);
          if (s) s.muted = { ...e.muted };
          this.stream(e.address, e.sid)?._muted({ ...e.muted });
          const ls = e.address === this.address ? this.published.get(e.sid) : void 0;
          if (ls) ls.info = { ...ls.info, muted: { ...e.muted } };
          this.emit("muted", { address: e.address, sid: e.sid, muted: { ...e.muted } });
          return;
        }
        case "unpublished": {
          if (e.address === this.address) {
            const ls = this.published.get(e.sid) ?? null;
            this.dropOwnStream(e.sid);
            if (ls) {
              this.published.delete(e.sid);
              deactivateTransceiver(ls.audioTransceiver);
              deactivateTransceiver(ls.videoTransceiver);
              this.emit("stream-unpublished", { address: e.address, sid: e.sid, reason: e.reason, local: true, stream: ls });
            }
            return;
          }
          const p = this.participants.get(e.address);
          if (p) p.streams = p.streams.filter((s) => s.sid !== e.sid);
          const rs = this.stream(e.address, e.sid);
          if (rs) this.removeStream(rs, e.reason);
          return;
        }
        case "talking": {
          const p = this.participants.get(e.address);
          if (p) p.talking = e.talking;
          this.emit("talking", { address: e.address, talking: e.talking });
          return;
        }
        case "speakers":
          this.speakers = [...e.order];
          this.emit("speakers", [...e.order]);
          return;
        case "subscriber":
          this.emit("subscriber", { address: e.address, sid: e.sid, joined: e.joined });
          return;
        case "layers":
          this.applyLayers(e.sid, e.active).then(
            () => this.emit("layers", { sid: e.sid, active: [...e.active] }),
            (err) => this._reportError(err)
          );
          return;
        case "layer":
          this.stream(e.address, e.sid)?._layer(e.layer);
          this.emit("layer", { address: e.address, sid: e.sid, layer: e.layer });
          return;
        case "recording":
          this.recording = { ...e.recording };
          this.emit("recording", { ...e.recording });
          return;
        case "audience":
          this.setAudienceCount(e.count);
          return;
        case "hand":
          this.setHand(e.address, e.name, e.raised);
          return;
        default:
          return;
      }
    }
    addStream(address, s) {
      const key = streamKey(address, s.sid);
      let rs = this.streams.get(key);
      if (rs && rs.ended === null) {
        rs.info = { ...s };
      } else {
        rs = new RemoteStream(this, address, { ...s });
        this.streams.set(key, rs);
      }
      this.emit("stream-published", rs);
      this.autoSubscribe(rs);
    }
    removeStream(rs, reason) {
      this.streams.delete(streamKey(rs.address, rs.sid));
      rs._end(reason);
      this.emit("stream-unpublished", { address: rs.address, sid: rs.sid, reason, local: false, stream: rs });
    }
  };
  var ICE_TROUBLE_MS = 2e3;
  var RESTART_EVERY_MS = 5e3;
  var REJOIN_RETRY_MS = 2e3;
  var REJOIN_RETRIES = 5;
  function iceBad(pc) {
    const s = pc.iceConnectionState;
    return s === "disconnected" || s === "failed";
  }
  function iceServersOf(joined) {
    return (joined.ice_servers ?? []).map((s) => ({ urls: [...s.urls], username: s.username, credential: s.credential }));
  }
  function cloneParticipant(p) {
    return {
      ...p,
      permissions: { ...p.permissions },
      admin_muted: { ...p.admin_muted },
      streams: p.streams.map((s) => ({ ...s, muted: { ...s.muted } }))
    };
  }
  function placeholderStream(sid) {
    return { sid, audio: true, video: true, screen: false, layers: 1, height: null, muted: { audio: false, video: false } };
  }
  function trackHeight(t) {
    if (!t || typeof t.getSettings !== "function") return void 0;
    const h = t.getSettings().height;
    return typeof h === "number" && h > 0 ? h : void 0;
  }
  function deactivateTransceiver(t) {
    if (!t) return;
    try {
      void t.sender.replaceTrack(null).catch(() => void 0);
      t.direction = "inactive";
    } catch {
    }
  }
  function stopTransceiver(t) {
    if (!t) return;
    try {
      t.stop();
    } catch {
    }
  }
  function errText(e) {
    return e instanceof Error ? e.message : String(e);
  }

  // src/direct.ts
  function directCallEnded(status) {
    return status !== "ringing" && status !== "answered";
  }
  var DirectCall = class _DirectCall extends Emitter {
    /** @internal */
    constructor(client, init) {
      super();
      this.client = client;
      this._status = "ringing";
      this._code = 3;
      this._media = null;
      this._heard = false;
      this.id = init.id;
      this.peer = init.peer;
      this.name = init.name;
      this.video = init.video;
      this.incoming = init.incoming;
    }
    /** Where the call stands. */
    get status() {
      return this._status;
    }
    /** Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`). */
    get code() {
      return this._code;
    }
    /** Who hung up (`ended`) or whose session was lost (`lost`). */
    get by() {
      return this._by;
    }
    /** A `call_status` of this call has arrived (before it, `status` is the assumed `ringing`). */
    get heard() {
      return this._heard;
    }
    /** The call is over. */
    get ended() {
      return directCallEnded(this._status);
    }
    /** The call's media room, once joined. */
    get media() {
      return this._media;
    }
    /** The `gid` of the call's media room (`-id`). */
    get room() {
      return -this.id;
    }
    /**
     * Answers a ringing incoming call from this session and joins its media room; the callee's
     * other sessions stop ringing. Rejects with `ChorusError` (`not_found`, `conflict`).
     */
    async answer(options = {}) {
      if (!this.incoming) throw new ChorusError("bad_request", "only the callee answers");
      await this.client.request({ type: "call_accept", call: this.id });
      return this.join(options);
    }
    /** Declines a ringing incoming call. */
    async decline() {
      await this.client.request({ type: "call_decline", call: this.id });
    }
    /** Hangs up (cancels while ringing, declines an incoming one); the media room closes. */
    async hangup() {
      if (this.ended) return;
      await this.client.request({ type: "call_hangup", call: this.id });
    }
    /**
     * Joins the media room of the answered call (the caller after `answered`; `answer()` does it
     * for the callee). Publish and subscribe on the returned `GroupCall`; the other side's streams
     * come as `stream-published` (or pass `autoSubscribe: true`).
     */
    async join(options = {}) {
      if (this._media?.active) return this._media;
      const media = await this.client.joinCall(this.room, { recover: false, ...options });
      this._media = media;
      return media;
    }
    /** @internal Applies a `call_status` frame. */
    _update(f) {
      if (this.ended) return;
      this._heard = true;
      this._status = f.status;
      this._code = f.code;
      this._by = f.by;
      this.emit("status", f);
      if (this.ended) this.emit("ended", f);
    }
    /** @internal An incoming call from its `call_incoming` frame. */
    static _incoming(client, f) {
      return new _DirectCall(client, { id: f.call, peer: f.from, name: f.name, video: f.video, incoming: true });
    }
  };

  // src/protocol.ts
  var ERROR_CODES = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "rate_limited",
    "code_invalid",
    "code_expired",
    "code_locked",
    "pin_invalid",
    "limit_exceeded",
    "method_not_allowed",
    "internal"
  ];
  function isErrorCode(s) {
    return typeof s === "string" && ERROR_CODES.includes(s);
  }
  var CloseCode = {
    /** Outbound queue overflowed: reconnect at once and resume. */
    FELL_BEHIND: 4e3,
    /** Token revoked / user deactivated: do not reconnect with the same token. */
    SESSION_ENDED: 4001,
    /** `hello` problems. */
    PROTOCOL_ERROR: 1008,
    /** Frame too large or broken WebSocket data. */
    BAD_FRAME: 1009
  };
  var REQUIRED = {
    welcome: { session: "string", user: "object", epoch: "string", resumed: "boolean" },
    synced: { pos: "number", count: "number", complete: "boolean" },
    sent: { id: "string", mid: "number", seq: "number", pos: "number", ts: "number", status: "number", duplicate: "boolean" },
    message: { mid: "number", id: "string", from: "string", seq: "number", pos: "number", ts: "number" },
    receipt: { by: "string", status: "number", seq: "number" },
    presence: { from: "string", presence: "number" },
    group: { gid: "number", event: "string" },
    group_media: { gid: "number", action: "string", id: "string" },
    board: { gid: "number", version: "number", from: "string", action: "string", objs: "array" },
    ok: {},
    pong: {},
    call_joined: { gid: "number", address: "string", permissions: "object", settings: "object", participants: "array" },
    call_audience: { gid: "number", count: "number", members: "array" },
    call_published: { stream: "object", sdp: "string" },
    call_sdp: {},
    call_offer: { gid: "number", sdp: "string", tracks: "array" },
    call_event: { gid: "number", event: "string" },
    call_recording: { gid: "number", recording: "object" },
    call_dialing: { call: "number", peer: "string", video: "boolean" },
    call_incoming: { call: "number", from: "string", name: "string", video: "boolean" },
    call_status: { call: "number", from: "string", to: "string", video: "boolean", status: "string", code: "number" },
    error: { code: "string", message: "string" }
  };
  function isServerFrameType(t) {
    return typeof t === "string" && Object.prototype.hasOwnProperty.call(REQUIRED, t);
  }
  function kindOf(v) {
    if (Array.isArray(v)) return "array";
    const t = typeof v;
    if (t === "string" || t === "number" || t === "boolean") return t;
    if (v !== null && t === "object") return "object";
    return "any";
  }
  function parseServerFrame(text) {
    const v = JSON.parse(text);
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new TypeError("frame is not a JSON object");
    const o = v;
    if (!isServerFrameType(o.type)) throw new TypeError(`unknown frame type ${JSON.stringify(o.type)}`);
    for (const [field, kind] of Object.entries(REQUIRED[o.type])) {
      if (!(field in o)) throw new TypeError(`${o.type} frame lacks "${field}"`);
      if (kind !== "any" && kindOf(o[field]) !== kind) throw new TypeError(`${o.type}.${field} is not a ${kind}`);
    }
    return o;
  }
  function frameRid(f) {
    return "rid" in f && typeof f.rid === "string" ? f.rid : void 0;
  }

  // src/rest.ts
  function normalizeServer(server) {
    return server.replace(/\/+$/, "");
  }
  async function restRequest(server, method, path, opts = {}) {
    return (await restExchange(server, method, path, opts)).json;
  }
  async function restPage(server, path, opts = {}) {
    const { json, res } = await restExchange(server, "GET", path, opts);
    return { items: Array.isArray(json) ? json : [], next: nextLink(res.headers.get("link")) };
  }
  function nextLink(header) {
    if (!header) return null;
    for (const part of header.split(",")) {
      const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
      if (!m || !/(^|;)\s*rel="?next"?\s*(;|$)/.test(m[2])) continue;
      const target = m[1];
      if (target.startsWith("/")) return target;
      try {
        const u = new URL(target);
        return u.pathname + u.search;
      } catch {
        return null;
      }
    }
    return null;
  }
  async function restExchange(server, method, path, opts = {}) {
    const f = opts.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
    if (!f) throw new ChorusError("network", "no fetch implementation available");
    const headers = {};
    if (opts.token) headers["Authorization"] = `Bearer ${opts.token}`;
    if (opts.body !== void 0) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await f(normalizeServer(server) + path, {
        method,
        headers,
        body: opts.body === void 0 ? void 0 : JSON.stringify(opts.body)
      });
    } catch (e) {
      throw new ChorusError("network", `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    const text = await res.text();
    let json = void 0;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = void 0;
      }
    }
    if (!res.ok) {
      const err = json?.error;
      if (err && isErrorCode(err.code)) {
        throw new ChorusError(err.code, typeof err.message === "string" ? err.message : err.code, {
          httpStatus: res.status
        });
      }
      throw new ChorusError(res.status === 401 ? "unauthorized" : "internal", `HTTP ${res.status} from ${path}`, {
        httpStatus: res.status
      });
    }
    return { json, res };
  }
  var RestClient = class {
    constructor(server, token, options = {}) {
      this.server = normalizeServer(server);
      this.token = token;
      this.fetchImpl = options.fetch;
    }
    /** Any REST request with this token. */
    request(method, path, body) {
      return restRequest(this.server, method, path, { token: this.token, body, fetch: this.fetchImpl });
    }
    /** One page of a paged list with this token; `next` is the path of the following page. */
    page(path) {
      return restPage(this.server, path, { token: this.token, fetch: this.fetchImpl });
    }
    /** Every item of a paged list: follows the `next` links from `path` to the last page. */
    async all(path) {
      const out = [];
      const seen = /* @__PURE__ */ new Set();
      let next = path;
      while (next !== null && !seen.has(next)) {
        seen.add(next);
        const page = await this.page(next);
        out.push(...page.items);
        next = page.next;
      }
      return out;
    }
    /** `GET /v1/me`. */
    me() {
      return this.request("GET", "/v1/me");
    }
    /** `PATCH /v1/me`. */
    updateMe(name) {
      return this.request("PATCH", "/v1/me", { name });
    }
    /** `GET /v1/groups`: every group you belong to, most recently joined first (all pages). */
    groups() {
      return this.all("/v1/groups");
    }
    /** `GET /v1/groups/{gid}`. */
    group(gid) {
      return this.request("GET", `/v1/groups/${gid}`);
    }
    /** `POST /v1/groups`. */
    createGroup(options) {
      return this.request("POST", "/v1/groups", options);
    }
    /** `PATCH /v1/groups/{gid}`. */
    updateGroup(gid, settings) {
      return this.request("PATCH", `/v1/groups/${gid}`, settings);
    }
    /** `DELETE /v1/groups/{gid}`. */
    async deleteGroup(gid) {
      await this.request("DELETE", `/v1/groups/${gid}`);
    }
    /** `POST /v1/groups/{gid}/join` with a pin. */
    joinGroup(gid, pin) {
      return this.request("POST", `/v1/groups/${gid}/join`, { pin: String(pin) });
    }
    /** `POST /v1/groups/{gid}/leave`. */
    async leaveGroup(gid) {
      await this.request("POST", `/v1/groups/${gid}/leave`);
    }
    /** `GET /v1/groups/{gid}/members`: every member, in join order (all pages). */
    members(gid) {
      return this.all(`/v1/groups/${gid}/members`);
    }
    /** `POST /v1/groups/{gid}/members`. */
    async addMembers(gid, addresses, flags) {
      await this.request("POST", `/v1/groups/${gid}/members`, { addresses, ...flags });
    }
    /** `DELETE /v1/groups/{gid}/members/{address}`. */
    async removeMember(gid, address) {
      await this.request("DELETE", `/v1/groups/${gid}/members/${encodeURIComponent(address)}`);
    }
    /** `GET /v1/groups/{gid}/pins`. */
    pins(gid) {
      return this.request("GET", `/v1/groups/${gid}/pins`);
    }
    /** `POST /v1/groups/{gid}/pins`. */
    createPin(gid, options) {
      return this.request("POST", `/v1/groups/${gid}/pins`, options);
    }
    /** `PATCH /v1/groups/{gid}/pins/{pin}`: changes a pin. */
    editPin(gid, pin, options) {
      return this.request("PATCH", `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`, options);
    }
    /** `DELETE /v1/groups/{gid}/pins/{pin}`. */
    async revokePin(gid, pin) {
      await this.request("DELETE", `/v1/groups/${gid}/pins/${encodeURIComponent(pin)}`);
    }
    /** `GET /v1/groups/{gid}/board`. */
    board(gid) {
      return this.request("GET", `/v1/groups/${gid}/board`);
    }
    /** `PUT /v1/groups/{gid}/board`: replace the board (only if still at `version`, when given). */
    setBoard(gid, objs, version) {
      return this.request("PUT", `/v1/groups/${gid}/board`, version === void 0 ? { objs } : { objs, version });
    }
    /** `POST /v1/groups/{gid}/board`: add objects at the end of the board. */
    appendBoard(gid, objs) {
      return this.request("POST", `/v1/groups/${gid}/board`, { objs });
    }
    /** `GET /v1/groups/{gid}/media`: one page of the group's media library, newest first. */
    media(gid, options = {}) {
      const q = [];
      if (options.before !== void 0) q.push(`before=${encodeURIComponent(options.before)}`);
      if (options.limit !== void 0) q.push(`limit=${options.limit}`);
      return this.request("GET", `/v1/groups/${gid}/media${q.length ? "?" + q.join("&") : ""}`);
    }
    /** `GET /v1/groups/{gid}/media/{id}`. */
    mediaEntry(gid, id) {
      return this.request("GET", `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
    }
    /** `POST /v1/groups/{gid}/media`: adds a finished upload of yours to the library. */
    addMedia(gid, upload) {
      return this.request("POST", `/v1/groups/${gid}/media`, { upload });
    }
    /** `DELETE /v1/groups/{gid}/media/{id}` (the member who added it, or an admin): the file stays your upload. */
    async deleteMedia(gid, id) {
      await this.request("DELETE", `/v1/groups/${gid}/media/${encodeURIComponent(id)}`);
    }
    /** `GET /v1/files/{id}`. */
    fileInfo(id) {
      return this.request("GET", `/v1/files/${encodeURIComponent(id)}`);
    }
    /** `POST /v1/files/{id}/url`: a signed URL for `<video src>`, `<img src>` or a download link. */
    async fileUrl(id) {
      const r = await this.request("POST", `/v1/files/${encodeURIComponent(id)}/url`);
      return { url: new URL(r.url, `${this.server}/`).toString(), expires_ms: r.expires_ms };
    }
    /** `DELETE /v1/uploads/{id}`: deletes your upload and its bytes (and the file from every library). */
    async deleteUpload(id) {
      const f = this.fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
      if (!f) throw new ChorusError("network", "no fetch implementation available");
      const res = await f(`${this.server}/v1/uploads/${encodeURIComponent(id)}`, {
        method: "DELETE",
        headers: { Authorization: `Bearer ${this.token}`, "Tus-Resumable": "1.0.0" }
      });
      if (res.status !== 204) throw new ChorusError(res.status === 404 ? "not_found" : res.status === 401 ? "unauthorized" : "internal", `HTTP ${res.status} deleting upload`, { httpStatus: res.status });
    }
    /**
     * The bytes of a server path read with the token (a file's `/v1/files/{id}/content`, a
     * library thumbnail, a chat file's `url`), as a `Blob`.
     */
    async blob(path) {
      const f = this.fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
      if (!f) throw new ChorusError("network", "no fetch implementation available");
      let res;
      try {
        res = await f(path.startsWith("/") ? this.server + path : path, { headers: { Authorization: `Bearer ${this.token}` } });
      } catch (e) {
        throw new ChorusError("network", `request to ${path} failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (!res.ok) {
        const code = res.status === 404 ? "not_found" : res.status === 403 ? "forbidden" : res.status === 401 ? "unauthorized" : "internal";
        throw new ChorusError(code, `HTTP ${res.status} from ${path}`, { httpStatus: res.status });
      }
      return res.blob();
    }
    /** History of a conversation, newest last (`before`: a `seq` to page backwards). */
    history(conv, options = {}) {
      const q = [];
      if (options.before !== void 0) q.push(`before=${options.before}`);
      if (options.limit !== void 0) q.push(`limit=${options.limit}`);
      return this.request("GET", `${convPath(conv)}/messages${q.length ? "?" + q.join("&") : ""}`);
    }
    /** Every member's delivered/read watermarks in a conversation. */
    async receipts(conv) {
      const r = await this.request("GET", `${convPath(conv)}/receipts`);
      return r.members;
    }
    /** `GET /v1/conversations`, most recently active first. */
    conversations() {
      return this.request("GET", "/v1/conversations");
    }
  };
  function convPath(conv) {
    return conv.gid !== void 0 ? `/v1/groups/${conv.gid}` : `/v1/users/${encodeURIComponent(conv.peer)}`;
  }

  // src/upload.ts
  var DEFAULT_CHUNK = 16 * 1024 * 1024;
  var DEFAULT_RETRIES = [0, 1e3, 3e3, 5e3, 1e4];
  function metadataValue(s) {
    let bin = "";
    for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
    return btoa(bin);
  }
  function fetchTransport(f) {
    return async (req) => {
      const res = await f(req.url, { method: req.method, headers: req.headers, body: req.body ?? null, signal: req.signal });
      const text = await res.text();
      if (req.body) req.onProgress?.(req.body.size);
      return { status: res.status, header: (n) => res.headers.get(n), text };
    };
  }
  function xhrTransport() {
    return (req) => new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(req.method, req.url);
      for (const [k, v] of Object.entries(req.headers)) xhr.setRequestHeader(k, v);
      if (req.onProgress) xhr.upload.onprogress = (e) => req.onProgress?.(e.loaded);
      const abort = () => xhr.abort();
      req.signal.addEventListener("abort", abort);
      const fail = (why) => () => {
        req.signal.removeEventListener("abort", abort);
        reject(new ChorusError("network", why));
      };
      xhr.onerror = fail("the connection failed");
      xhr.onabort = fail("aborted");
      xhr.ontimeout = fail("timed out");
      xhr.onload = () => {
        req.signal.removeEventListener("abort", abort);
        resolve({ status: xhr.status, header: (n) => xhr.getResponseHeader(n), text: xhr.responseText });
      };
      xhr.send(req.body ?? null);
    });
  }
  function errorOf(res, what) {
    let code;
    let message = `${what}: HTTP ${res.status}`;
    try {
      const e = JSON.parse(res.text).error;
      code = e?.code;
      if (typeof e?.message === "string") message = e.message;
    } catch {
    }
    const c = isErrorCode(code) ? code : res.status === 401 ? "unauthorized" : res.status === 404 ? "not_found" : res.status === 413 ? "too_large" : "internal";
    return new ChorusError(c, message, { httpStatus: res.status });
  }
  var Upload = class extends Emitter {
    constructor(server, token, file, options = {}) {
      super();
      this.server = server;
      this.token = token;
      /** Bytes the server has confirmed. */
      this.offset = 0;
      this._state = "uploading";
      this.abort = null;
      this.running = false;
      this.file = file;
      this.name = options.name ?? file.name ?? "file";
      this.id = options.id ?? null;
      this.chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK);
      this.retryDelays = options.retryDelays ?? DEFAULT_RETRIES;
      const f = options.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
      this.transport = options.transport ?? (typeof XMLHttpRequest !== "undefined" ? xhrTransport() : f ? fetchTransport(f) : () => Promise.reject(new ChorusError("network", "no fetch")));
      this.done = new Promise((resolve, reject) => this.settle = { resolve, reject });
      this.done.catch(() => void 0);
      void this.run();
    }
    get state() {
      return this._state;
    }
    /** Stops sending; the server keeps what arrived. `resume()` continues from there. */
    pause() {
      if (this._state !== "uploading") return;
      this.setState("paused");
      this.abort?.abort();
    }
    /** Continues a paused upload from the server's offset. */
    resume() {
      if (this._state !== "paused") return;
      this.setState("uploading");
      void this.run();
    }
    /** Stops and deletes the upload and its bytes on the server (tus termination). */
    async cancel() {
      if (this._state === "done" || this._state === "cancelled" || this._state === "failed") return;
      this.setState("cancelled");
      this.abort?.abort();
      this.settle.reject(new ChorusError("state", "upload cancelled"));
      if (this.id) {
        await this.send({ method: "DELETE", url: this.url() }).catch(() => void 0);
      }
    }
    setState(s) {
      this._state = s;
      this.emit("state", s);
    }
    url() {
      return `${this.server}/v1/uploads/${encodeURIComponent(this.id ?? "")}`;
    }
    send(req) {
      this.abort = new AbortController();
      return this.transport({
        ...req,
        headers: { Authorization: `Bearer ${this.token()}`, "Tus-Resumable": "1.0.0", ...req.headers },
        signal: this.abort.signal
      });
    }
    progress(sent) {
      this.emit("progress", { sent: Math.min(sent, this.file.size), total: this.file.size });
    }
    /** Creates the upload if needed, then PATCHes chunks; after a broken request asks HEAD and goes on. */
    async run() {
      if (this.running) return;
      this.running = true;
      let retries = 0;
      let known = this.id === null;
      try {
        while (this._state === "uploading") {
          try {
            if (this.id === null) await this.create();
            else if (!known) await this.head();
            known = true;
            if (this.offset >= this.file.size) return this.finish();
            await this.patch();
            retries = 0;
          } catch (e) {
            if (this._state !== "uploading") return;
            const err = e instanceof ChorusError ? e : new ChorusError("network", String(e));
            const final = err.httpStatus !== void 0 && err.httpStatus !== 409 && err.httpStatus < 500;
            if (final || retries >= this.retryDelays.length) return this.fail(err);
            await new Promise((r) => setTimeout(r, this.retryDelays[retries++]));
            known = false;
          }
        }
      } finally {
        this.running = false;
      }
    }
    async create() {
      const res = await this.send({
        method: "POST",
        url: `${this.server}/v1/uploads`,
        headers: { "Upload-Length": String(this.file.size), "Upload-Metadata": `filename ${metadataValue(this.name)}` }
      });
      if (res.status !== 201) throw errorOf(res, "upload refused");
      const id = (res.header("location") ?? "").split("/").pop() ?? "";
      if (!id) throw new ChorusError("internal", "upload: no Location in the answer");
      this.id = id;
      this.offset = 0;
      this.progress(0);
    }
    async head() {
      const res = await this.send({ method: "HEAD", url: this.url() });
      if (res.status !== 200) throw errorOf(res, "upload gone");
      const off = Number(res.header("upload-offset"));
      if (!Number.isSafeInteger(off) || off < 0 || off > this.file.size) throw new ChorusError("internal", "upload: bad Upload-Offset");
      this.offset = off;
      this.progress(off);
    }
    async patch() {
      const start = this.offset;
      const body = this.file.slice(start, Math.min(this.file.size, start + this.chunkSize));
      const res = await this.send({
        method: "PATCH",
        url: this.url(),
        headers: { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(start) },
        body,
        onProgress: (n) => this.progress(start + n)
      });
      if (res.status !== 204) throw errorOf(res, `upload failed at byte ${start}`);
      const next = Number(res.header("upload-offset"));
      if (!Number.isSafeInteger(next) || next <= start || next > this.file.size) throw new ChorusError("internal", "upload: bad Upload-Offset");
      this.offset = next;
      this.progress(next);
    }
    finish() {
      this.setState("done");
      this.settle.resolve(this.id);
    }
    fail(e) {
      this.setState("failed");
      this.settle.reject(e);
    }
  };

  // src/client.ts
  var OPEN = 1;
  function newMessageId() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    let s = "";
    for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
    return s;
  }
  var ChorusClient = class extends Emitter {
    constructor(options) {
      super();
      this.ws = null;
      this.serial = 0;
      this._state = "idle";
      this._user = null;
      this._synced = false;
      this.stopped = true;
      this.attempts = 0;
      this.pingOutstanding = false;
      this.ackedPos = -1;
      this.ridCounter = 0;
      this.pending = /* @__PURE__ */ new Map();
      this.outbox = /* @__PURE__ */ new Map();
      this.connectWaiters = [];
      this.lastWelcome = null;
      this._call = null;
      this.joining = 0;
      this.callBuffer = [];
      /** 1:1 calls ringing on this session or placed from it. */
      this.direct = /* @__PURE__ */ new Map();
      /** `call_status` frames of calls not known yet, by call id (at most 16 calls). */
      this.earlyStatus = /* @__PURE__ */ new Map();
      this.options = options;
      this.server = normalizeServer(options.server);
      this.rest = new RestClient(this.server, options.token, { fetch: options.fetch });
      this._cursor = options.cursor ?? null;
    }
    // ------------------------------------------------------------ state
    /** The connection state. */
    get state() {
      return this._state;
    }
    /** Who you are (from the last `welcome`). */
    get user() {
      return this._user;
    }
    /** Your address (from the last `welcome`). */
    get address() {
      return this._user?.address ?? null;
    }
    /** The resume cursor: the store epoch and the highest processed position. */
    get cursor() {
      return this._cursor ? { ...this._cursor } : null;
    }
    /** True between `synced` and the next disconnect. */
    get synced() {
      return this._synced;
    }
    /** The call room this session is in (a group's call, or a 1:1 call's media), if any. */
    get groupCall() {
      return this._call;
    }
    /** Messages waiting for their `sent` answer, by client id. */
    get outboxSize() {
      return this.outbox.size;
    }
    /** The access token. Setting it takes effect at the next (re)connect. */
    get token() {
      return this.rest.token;
    }
    set token(t) {
      this.rest.token = t;
    }
    // ------------------------------------------------------------ connection
    /**
     * Opens the session (and keeps it open, reconnecting as needed). Resolves
     * with the `welcome` once the backlog is through (`synced`); rejects if the
     * token is refused or `close()` is called first.
     */
    connect() {
      if (this._synced && this.lastWelcome) return Promise.resolve(this.lastWelcome);
      const p = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
      if (this.stopped) {
        this.stopped = false;
        this.attempts = 0;
        this.open();
      }
      return p;
    }
    /** Closes the session for good (no reconnect). Pending requests and unsent messages are rejected. */
    close() {
      this.stopped = true;
      clearTimeout(this.reconnectTimer);
      this.endCall();
      const ws = this.ws;
      this.teardown();
      if (ws) {
        try {
          ws.close(1e3, "client closed");
        } catch {
        }
      }
      const err = new ChorusError("closed", "the client was closed");
      for (const [, o] of this.outbox) o.reject(err);
      this.outbox.clear();
      this.rejectConnectWaiters(err);
      this.setState("closed");
    }
    /**
     * Where to open the WebSocket: with a fresh single-use ticket from `POST /v1/ws/ticket`,
     * so the access token stays out of URLs (and the logs that keep them). Falls back to
     * `?token=` when no ticket can be had (an older server, or a page on another origin:
     * the server sends no CORS headers); rejects with `unauthorized` when the token is refused.
     */
    async wsUrl() {
      const base = `${this.server.replace(/^http/i, "ws")}/v1/ws`;
      try {
        const t = await this.rest.request("POST", "/v1/ws/ticket");
        if (typeof t?.ticket === "string") return `${base}?ticket=${encodeURIComponent(t.ticket)}`;
      } catch (e) {
        if (e instanceof ChorusError && e.code === "unauthorized") throw e;
      }
      return `${base}?token=${encodeURIComponent(this.rest.token)}`;
    }
    open() {
      const Ctor = this.options.WebSocket ?? globalThis.WebSocket;
      if (!Ctor) throw new ChorusError("state", "no WebSocket implementation available");
      const serial = ++this.serial;
      this.setState("connecting");
      this.wsUrl().then(
        (url) => {
          if (serial === this.serial && !this.stopped) this.openSocket(Ctor, url, serial);
        },
        () => {
          if (serial === this.serial && !this.stopped) this.authFailed(void 0);
        }
      );
    }
    openSocket(Ctor, url, serial) {
      let ws;
      try {
        ws = new Ctor(url);
      } catch (e) {
        this.scheduleReconnect(void 0);
        return;
      }
      this.ws = ws;
      let welcomed = false;
      ws.onopen = () => {
        if (serial !== this.serial) return;
        const hello = this._cursor ? { type: "hello", resume: this._cursor } : { type: "hello" };
        this.transmit(hello);
      };
      ws.onmessage = (ev) => {
        if (serial !== this.serial) return;
        if (typeof ev.data !== "string") return;
        let f;
        try {
          f = parseServerFrame(ev.data);
        } catch (e) {
          console.warn("chorus: ignoring bad frame", e);
          return;
        }
        if (f.type === "welcome") welcomed = true;
        this.handleFrame(f);
      };
      ws.onerror = () => {
      };
      ws.onclose = (ev) => {
        if (serial !== this.serial) return;
        this.onClosed(ev.code, welcomed);
      };
    }
    onClosed(code, welcomed) {
      this.teardown();
      if (this.stopped) return;
      if (code === CloseCode.SESSION_ENDED) {
        this.authFailed(code);
        return;
      }
      if (!welcomed && this.attempts >= 1) {
        this.rest.me().then(
          () => this.scheduleReconnect(code),
          (e) => {
            if (e instanceof ChorusError && e.code === "unauthorized") this.authFailed(code);
            else this.scheduleReconnect(code);
          }
        );
        this.setState("offline", { code });
        return;
      }
      this.scheduleReconnect(code);
    }
    authFailed(code) {
      this.stopped = true;
      this.endCall();
      const err = new ChorusError("unauthorized", "the access token is no longer valid");
      for (const [, o] of this.outbox) o.reject(err);
      this.outbox.clear();
      this.rejectConnectWaiters(err);
      this.setState("auth_failed", code === void 0 ? {} : { code });
    }
    scheduleReconnect(code) {
      if (this.stopped) return;
      const r = this.options.reconnect ?? true;
      if (r === false) {
        this.stopped = true;
        this.endCall();
        this.rejectConnectWaiters(new ChorusError("disconnected", `connection closed (${code ?? "failed"})`));
        this.setState("closed", { code });
        return;
      }
      const min = typeof r === "object" && r.minDelay !== void 0 ? r.minDelay : 1e3;
      const max = typeof r === "object" && r.maxDelay !== void 0 ? r.maxDelay : 3e4;
      let delay;
      if (code === CloseCode.FELL_BEHIND && this.attempts === 0) delay = 0;
      else delay = Math.min(max, min * 2 ** this.attempts) * (0.75 + Math.random() * 0.5);
      delay = Math.round(delay);
      this.attempts++;
      clearTimeout(this.reconnectTimer);
      this.setState("offline", { code, retryIn: delay });
      this.reconnectTimer = setTimeout(() => {
        if (!this.stopped) this.open();
      }, delay);
    }
    /**
     * @internal Test hook: drops the WebSocket as a broken network would (closes it and reconnects
     * with the usual backoff). Browsers' offline emulation leaves open WebSockets alone.
     */
    _dropConnection() {
      const ws = this.ws;
      if (!ws || this.stopped) return;
      try {
        ws.close();
      } catch {
      }
      this.onClosed(1006, true);
    }
    /** No reconnect will come: a call waiting to rejoin ends (`lost`). */
    endCall() {
      const call = this._call;
      this._call = null;
      call?._end("lost");
    }
    /** Ends the current socket's state: pending requests fail, a call waits to rejoin (or ends). */
    teardown() {
      this.serial++;
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      }
      this._synced = false;
      clearInterval(this.pingTimer);
      this.pingTimer = void 0;
      this.pingOutstanding = false;
      clearTimeout(this.ackTimer);
      this.ackTimer = void 0;
      const err = new ChorusError("disconnected", "the connection was lost");
      for (const [rid, p] of this.pending) {
        clearTimeout(p.timer);
        this.pending.delete(rid);
        if (p.sendId === void 0) p.reject(err);
      }
      if (this._call && (this.stopped || this.options.reconnect === false || !this._call._connectionLost())) this.endCall();
      this.callBuffer = [];
      const me = this._user?.address ?? "";
      for (const call of this.direct.values()) {
        const [from, to] = call.incoming ? [call.peer, me] : [me, call.peer];
        call._update({ type: "call_status", call: call.id, from, to, video: call.video, status: "lost", code: 98, by: me });
      }
      this.direct.clear();
      this.earlyStatus.clear();
      if (ws && this._state === "online") this.setState("offline");
    }
    rejectConnectWaiters(err) {
      const w = this.connectWaiters;
      this.connectWaiters = [];
      for (const x of w) x.reject(err);
    }
    setState(state, extra = {}) {
      const changed = state !== this._state;
      this._state = state;
      if (changed || extra.retryIn !== void 0) this.emit("connection", { state, ...extra });
    }
    // ------------------------------------------------------------ frames in
    handleFrame(f) {
      this.emit("frame", f);
      const rid = frameRid(f);
      if (rid !== void 0) {
        const p = this.pending.get(rid);
        if (p) {
          this.pending.delete(rid);
          clearTimeout(p.timer);
          if (p.sendId !== void 0) this.settleSend(p.sendId, f);
          else if (f.type === "error") p.reject(ChorusError.fromFrame(f));
          else p.resolve(f);
          return;
        }
      }
      switch (f.type) {
        case "welcome":
          return this.onWelcome(f);
        case "synced":
          return this.onSynced(f);
        case "message": {
          const { type: _t, ...m } = f;
          this.emit("message", m);
          this.advanceCursor(f.pos);
          if (this._synced) this.scheduleAck(200);
          return;
        }
        case "receipt":
          return this.emit("receipt", f);
        case "presence":
          return this.emit("presence", f);
        case "group":
          return this.emit("group", f);
        case "board":
          return this.emit("board", f);
        case "group_media":
          return this.emit("group_media", f);
        case "sent":
          return this.settleSend(f.id, f);
        case "call_offer":
        case "call_event":
          if (this._call) this._call._handle(f);
          else if (this.joining > 0) this.callBuffer.push(f);
          return;
        case "call_incoming":
          return this.onIncomingCall(f);
        case "call_status":
          return this.onCallStatus(f);
        case "error":
          return this.onUnsolicitedError(f);
        default:
          return;
      }
    }
    onWelcome(f) {
      this._user = f.user;
      this.lastWelcome = f;
      if (!this._cursor || this._cursor.epoch !== f.epoch || !f.resumed && f.reason) {
        this._cursor = { epoch: f.epoch, pos: 0 };
        this.ackedPos = -1;
      }
      this.emit("welcome", f);
    }
    onSynced(f) {
      this.advanceCursor(f.pos);
      this._synced = true;
      this.attempts = 0;
      this.setState("online");
      this.startPing();
      this.emit("synced", f);
      this.flushAck();
      this.flushOutbox();
      this._call?._connectionBack();
      const w = this.connectWaiters;
      this.connectWaiters = [];
      if (this.lastWelcome) for (const x of w) x.resolve(this.lastWelcome);
    }
    onUnsolicitedError(f) {
      const err = ChorusError.fromFrame(f);
      if (f.id !== void 0 && this.outbox.has(f.id)) {
        this.settleSend(f.id, f);
        return;
      }
      if (f.code === "unauthorized") {
      }
      this.emit("error", err);
    }
    advanceCursor(pos) {
      if (!this._cursor) return;
      if (pos > this._cursor.pos) {
        this._cursor = { epoch: this._cursor.epoch, pos };
        this.emit("cursor", { ...this._cursor });
      }
    }
    // ------------------------------------------------------------ frames out
    transmit(frame) {
      const ws = this.ws;
      if (!ws || ws.readyState !== OPEN) return false;
      ws.send(JSON.stringify(frame));
      return true;
    }
    /**
     * Sends a request frame with a fresh `rid` and resolves with its answer
     * (rejects with `ChorusError` on an `error` answer, a timeout or a drop).
     * Requests need a live session (after `welcome`).
     */
    request(frame, options = {}) {
      return new Promise((resolve, reject) => {
        if (!this.ws || this.ws.readyState !== OPEN || !this.lastWelcome) {
          reject(new ChorusError("disconnected", "not connected"));
          return;
        }
        const rid = String(++this.ridCounter);
        const timeout = options.timeout ?? this.options.requestTimeout ?? 2e4;
        const p = { resolve, reject, timer: void 0 };
        if (timeout > 0) {
          p.timer = setTimeout(() => {
            this.pending.delete(rid);
            reject(new ChorusError("timeout", `no answer to ${frame.type} within ${timeout} ms`));
          }, timeout);
        }
        this.pending.set(rid, p);
        this.transmit({ ...frame, rid });
      });
    }
    /**
     * Sends a message. Resolves with the `sent` answer (possibly
     * `duplicate: true` after a retry). The message waits in the outbox while
     * disconnected and is resent with the same id after each reconnect; rejects
     * with `ChorusError` (with `id` and `status`) when the server refuses it.
     */
    send(msg) {
      const id = msg.id ?? newMessageId();
      const frame = { type: "send", id };
      if (msg.peer !== void 0) frame.peer = msg.peer;
      if (msg.gid !== void 0) frame.gid = msg.gid;
      if (msg.text !== void 0) frame.text = msg.text;
      if (msg.data !== void 0) frame.data = msg.data;
      if (msg.file !== void 0) frame.file = msg.file;
      if (msg.mtype !== void 0) frame.mtype = msg.mtype;
      if (this._state === "closed" || this._state === "auth_failed") {
        return Promise.reject(
          this._state === "closed" ? new ChorusError("closed", "the client is closed") : new ChorusError("unauthorized", "the access token is no longer valid")
        );
      }
      const existing = this.outbox.get(id);
      if (existing) return new Promise((resolve, reject) => this.chainOutbox(existing, resolve, reject));
      return new Promise((resolve, reject) => {
        const entry = { frame, resolve, reject, sentOn: -1 };
        this.outbox.set(id, entry);
        if (this._synced) this.transmitSend(entry);
      });
    }
    chainOutbox(e, resolve, reject) {
      const r0 = e.resolve;
      const j0 = e.reject;
      e.resolve = (f) => (r0(f), resolve(f));
      e.reject = (x) => (j0(x), reject(x));
    }
    /** Ids of the messages waiting for `sent`. */
    pendingSends() {
      return [...this.outbox.keys()];
    }
    transmitSend(entry) {
      if (!this.ws || this.ws.readyState !== OPEN) return;
      const rid = String(++this.ridCounter);
      this.pending.set(rid, { resolve: () => {
      }, reject: () => {
      }, timer: void 0, sendId: entry.frame.id });
      entry.sentOn = this.serial;
      this.transmit({ ...entry.frame, rid });
    }
    flushOutbox() {
      for (const [, e] of this.outbox) if (e.sentOn !== this.serial) this.transmitSend(e);
    }
    settleSend(id, f) {
      const e = this.outbox.get(id);
      if (!e) return;
      if (f.type === "sent") {
        this.outbox.delete(id);
        e.resolve(f);
        this.emit("sent", f);
        const { rid: _rid, type: _type, ...content } = e.frame;
        this.emit("own-message", {
          ...content,
          mid: f.mid,
          from: this._user?.address ?? "",
          seq: f.seq,
          pos: f.pos,
          ts: f.ts,
          mtype: e.frame.mtype ?? 0,
          edited: false,
          deleted: false
        });
      } else if (f.type === "error") {
        this.outbox.delete(id);
        e.reject(ChorusError.fromFrame({ ...f, id: f.id ?? id }));
      }
    }
    /** Edits one of your messages (`text`/`data` replace the old ones). */
    async edit(mid, content) {
      await this.request({ type: "edit", mid, ...content });
    }
    /** Deletes one of your messages (leaves a tombstone). */
    async delete(mid) {
      await this.request({ type: "delete", mid });
    }
    /** Marks a conversation read up to and including `seq`. */
    async read(to) {
      await this.request(to.gid !== void 0 ? { type: "read", gid: to.gid, seq: to.seq } : { type: "read", peer: to.peer, seq: to.seq });
    }
    /** Typing started (`on`, default true) or stopped in a conversation. No answer; failures come as `error` events. */
    typing(to) {
      const on = to.on ?? true;
      this.transmit(to.gid !== void 0 ? { type: "typing", gid: to.gid, on } : { type: "typing", peer: to.peer, on });
    }
    /** Sends `ack` for everything processed up to `pos` (default: the cursor). Done automatically unless `autoAck: false`. */
    ack(pos) {
      const p = pos ?? this._cursor?.pos;
      if (p === void 0) return;
      if (this.transmit({ type: "ack", pos: p })) this.ackedPos = Math.max(this.ackedPos, p);
    }
    scheduleAck(delay) {
      if (this.options.autoAck === false || this.ackTimer !== void 0) return;
      this.ackTimer = setTimeout(() => {
        this.ackTimer = void 0;
        this.flushAck();
      }, delay);
    }
    flushAck() {
      if (this.options.autoAck === false || !this._cursor) return;
      if (this._cursor.pos > this.ackedPos) this.ack(this._cursor.pos);
    }
    /** Round trip to the server; resolves with the time taken in ms. */
    async ping() {
      const t0 = Date.now();
      await this.request({ type: "ping" });
      return Date.now() - t0;
    }
    startPing() {
      clearInterval(this.pingTimer);
      const every = this.options.pingInterval ?? 25e3;
      if (every <= 0) return;
      this.pingTimer = setInterval(() => {
        if (this.pingOutstanding) {
          const ws = this.ws;
          this.onClosed(1006, true);
          try {
            ws?.close(4002, "ping timeout");
          } catch {
          }
          return;
        }
        this.pingOutstanding = true;
        this.request({ type: "ping" }, { timeout: 0 }).then(
          () => this.pingOutstanding = false,
          () => this.pingOutstanding = false
        );
      }, every);
    }
    // ------------------------------------------------------------ calls
    /**
     * Joins the call of group `gid` (leaving any call this session is in) and
     * resolves with the `GroupCall` once the server answered `call_joined`.
     */
    async joinCall(gid, options = {}) {
      if (this._call) {
        const old = this._call;
        this._call = null;
        old._end("left");
      }
      this.joining++;
      try {
        const joined = await this.request({ type: "call_join", gid });
        const call = new GroupCall(this, joined, {
          RTCPeerConnection: this.options.RTCPeerConnection,
          ...options
        });
        this._call = call;
        const buffered = this.callBuffer.filter((f) => f.gid === gid);
        this.callBuffer = [];
        call._start();
        for (const f of buffered) call._handle(f);
        return call;
      } finally {
        this.joining--;
        if (this.joining === 0) this.callBuffer = [];
      }
    }
    /**
     * Places a 1:1 call to `address` (docs/protocol.md §17). Resolves with the `DirectCall` once
     * the server placed it; its `status` events follow (`ringing`, then `answered` — join its media
     * with `call.join()` — or how it ended: `busy`, `declined`, `no_answer`, `offline`, …). Rejects
     * with `ChorusError` (`not_found`: no such user; `bad_request`: yourself; `conflict`: you are
     * in a 1:1 call already), its `status` being Mesibo's call status.
     */
    async call(address, options = {}) {
      const video = options.video ?? false;
      const f = await this.request({ type: "call_dial", peer: address, video });
      const call = new DirectCall(this, { id: f.call, peer: f.peer, name: f.peer, video: f.video, incoming: false });
      this.trackDirect(call);
      return call;
    }
    /** The 1:1 calls this session is ringing with or has placed, not yet ended. */
    get directCalls() {
      return [...this.direct.values()];
    }
    trackDirect(call) {
      this.direct.set(call.id, call);
      const early = this.earlyStatus.get(call.id) ?? [];
      this.earlyStatus.delete(call.id);
      for (const f of early) this.applyCallStatus(call, f);
    }
    onIncomingCall(f) {
      const call = DirectCall._incoming(this, f);
      this.trackDirect(call);
      if (!call.ended) this.emit("incoming-call", call);
    }
    onCallStatus(f) {
      this.emit("call-status", f);
      const call = this.direct.get(f.call);
      if (call) return this.applyCallStatus(call, f);
      if (this.earlyStatus.size >= 16) this.earlyStatus.delete(this.earlyStatus.keys().next().value);
      this.earlyStatus.set(f.call, [...this.earlyStatus.get(f.call) ?? [], f]);
    }
    applyCallStatus(call, f) {
      call._update(f);
      if (call.ended) this.direct.delete(call.id);
    }
    /** @internal Called by a GroupCall that ended itself. */
    _callEnded(call) {
      if (this._call === call) this._call = null;
    }
    // ------------------------------------------------------------ REST shortcuts
    /** `GET /v1/me`. */
    me() {
      return this.rest.me();
    }
    /** `POST /v1/groups`. */
    createGroup(options) {
      return this.rest.createGroup(options);
    }
    /** `POST /v1/groups/{gid}/join`. */
    joinGroup(gid, pin) {
      return this.rest.joinGroup(gid, pin);
    }
    /** `GET /v1/groups/{gid}/members`. */
    members(gid) {
      return this.rest.members(gid);
    }
    /** `GET /v1/groups/{gid}/board`: the group's whiteboard. */
    board(gid) {
      return this.rest.board(gid);
    }
    /** `PUT /v1/groups/{gid}/board`: replace the whiteboard (only if still at `version`, when given). */
    setBoard(gid, objs, version) {
      return this.rest.setBoard(gid, objs, version);
    }
    /** `POST /v1/groups/{gid}/board`: add objects to the whiteboard. */
    appendBoard(gid, objs) {
      return this.rest.appendBoard(gid, objs);
    }
    /** `GET /v1/groups/{gid}/pins`. */
    pins(gid) {
      return this.rest.pins(gid);
    }
    /** `GET /v1/groups`. */
    groups() {
      return this.rest.groups();
    }
    /** `GET /v1/groups/{gid}`. */
    group(gid) {
      return this.rest.group(gid);
    }
    /** History of a conversation (REST). */
    history(conv, options) {
      return this.rest.history(conv, options);
    }
    // ------------------------------------------------------------ files and media
    /**
     * Uploads `file` by tus (docs/protocol.md 16.1), starting at once: listen to `progress`,
     * `pause()`/`resume()`/`cancel()` it, await `done` for the file's id. A broken connection
     * resumes from the server's offset by itself.
     */
    upload(file, options = {}) {
      return new Upload(this.server, () => this.rest.token, file, { fetch: this.options.fetch, ...options });
    }
    /**
     * Sends `file` as a chat message to `to` (`{ peer }` or `{ gid }`): uploads it (`onUpload`
     * gets the `Upload` for progress, pause and cancel), then sends a message carrying the stored
     * file, which only the conversation's members can read. Resolves with the upload id and the
     * server's `sent`.
     */
    async sendFile(to, file, options = {}) {
      const { text, onUpload, messageId, ...uploadOptions } = options;
      const up = this.upload(file, uploadOptions);
      onUpload?.(up);
      const upload = await up.done;
      const msg = { ...to, file: { url: "", upload, name: up.name } };
      if (text !== void 0) msg.text = text;
      if (messageId !== void 0) msg.id = messageId;
      return { upload, sent: await this.send(msg) };
    }
    /** `GET /v1/groups/{gid}/media`: one page of a group's media library, newest first. */
    media(gid, options) {
      return this.rest.media(gid, options);
    }
    /** `POST /v1/groups/{gid}/media`: adds a finished upload to the library (members get `group_media`). */
    addMedia(gid, upload) {
      return this.rest.addMedia(gid, upload);
    }
    /** `DELETE /v1/groups/{gid}/media/{id}`. */
    deleteMedia(gid, id) {
      return this.rest.deleteMedia(gid, id);
    }
    /** A signed URL of a stored file to play or show (`<video src>`, `<img src>`): `POST /v1/files/{id}/url`. */
    playUrl(id) {
      return this.rest.fileUrl(id);
    }
  };

  // src/mesibo/dispatch.ts
  function alternate(name) {
    const m = /^(Mesibo_|MesiboGroupcall_|MesiboGroupcallAdmin_)(on|On)(.*)$/.exec(name);
    if (!m) return null;
    return `${m[1]}${m[2] === "on" ? "On" : "on"}${m[3]}`;
  }
  function callbackOf(l, name) {
    if (!l || typeof l !== "object" && typeof l !== "function") return null;
    const o = l;
    const f = o[name];
    if (typeof f === "function") return f;
    const alt = alternate(name);
    const g2 = alt ? o[alt] : void 0;
    return typeof g2 === "function" ? g2 : null;
  }
  function fire(listeners, name, ...args) {
    let n = 0;
    const seen = /* @__PURE__ */ new Set();
    for (const l of listeners) {
      if (seen.has(l)) continue;
      seen.add(l);
      const f = callbackOf(l, name);
      if (!f) continue;
      n++;
      try {
        f.apply(l, args);
      } catch (e) {
        console.error(`mesibo: listener ${name} threw`, e);
      }
    }
    return n;
  }

  // src/mesibo/files.ts
  async function uploadBlob(f, server, token, blob, name) {
    const head = { Authorization: `Bearer ${token}`, "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream" };
    let bin = "";
    for (const b of new TextEncoder().encode(name)) bin += String.fromCharCode(b);
    let res = await f(`${server}/v1/uploads`, {
      method: "POST",
      headers: { ...head, "Upload-Length": String(blob.size), "Upload-Metadata": `filename ${btoa(bin)}` },
      body: blob
    });
    if (res.status !== 201) throw new Error(`upload refused: HTTP ${res.status} ${await res.text()}`);
    const id = (res.headers.get("location") ?? "").split("/").pop() ?? "";
    if (!id) throw new Error("upload: no Location in the answer");
    let offset = Number(res.headers.get("upload-offset") ?? "0");
    while (offset < blob.size) {
      res = await f(`${server}/v1/uploads/${id}`, { method: "PATCH", headers: { ...head, "Upload-Offset": String(offset) }, body: blob.slice(offset) });
      const next = Number(res.headers.get("upload-offset") ?? "NaN");
      if (res.status !== 204 || !(next > offset)) throw new Error(`upload failed at byte ${offset}: HTTP ${res.status}`);
      offset = next;
    }
    return id;
  }
  async function signedUrl(c, id) {
    const signed = await c.rest.request("POST", `/v1/files/${encodeURIComponent(id)}/url`);
    return new URL(signed.url, `${c.server}/`).toString();
  }

  // src/mesibo/messages.ts
  function failureStatus(e) {
    if (e instanceof ChorusError) {
      if (e.status !== void 0 && e.status >= 128) return e.status;
      switch (e.code) {
        case "not_found":
          return C.MESIBO_MSGSTATUS_INVALIDDEST;
        case "forbidden":
          return C.MESIBO_MSGSTATUS_NOTMEMBER;
        case "rate_limited":
        case "too_large":
          return C.MESIBO_RESULT_RETRYLATER;
        default:
          return C.MESIBO_MSGSTATUS_FAIL;
      }
    }
    return C.MESIBO_MSGSTATUS_FAIL;
  }
  var MesiboMessage = class {
    /** @internal */
    constructor(mesibo) {
      this.mesibo = mesibo;
      /** The client message id (a number when it is numeric, as Mesibo's ids are). */
      this.id = 0;
      /** Chorus server message id. */
      this.mid = 0;
      /** 1:1: the other user; group: the sender (as in Mesibo). */
      this.peer = "";
      this.groupid = 0;
      /** The sender's address. */
      this.sender = "";
      this.message = "";
      this.title = "";
      this.data = void 0;
      /** The file reference on the wire (`file.upload` for a file stored on this server). */
      this.file = void 0;
      /** Mesibo's file fields (file messages): type (image 1, video 2, audio 3, other 10), URL, size. */
      this.filetype = 0;
      /**
       * Where to fetch the file. For a file stored on this server, a signed URL (no token needed, for
       * `<a href>`/`<img src>`) on live messages; on messages read from history, its content path
       * (needs the token: ask `Mesibo.getFileUrl(m)` for a signed one).
       */
      this.fileurl = "";
      this.size = 0;
      this.type = 0;
      /** Kept on the object, not sent: the Chorus protocol has no expiry (messages are stored until deleted). */
      this.expiry = 0;
      this.flag = C.MESIBO_FLAG_DEFAULT;
      this.status = C.MESIBO_MSGSTATUS_OUTBOX;
      /** Send time, ms. */
      this.ts = 0;
      this.origin = C.MESIBO_ORIGIN_REALTIME;
      /** Sequence in its conversation (Chorus). */
      this.seq = 0;
      /** Group messages: how many members have read it (from read receipts). */
      this.rcount = 0;
      this.edited = false;
      this.deleted = false;
      /** Made by `forward()` (known to this page only: the protocol does not carry it). */
      this.forwarded = false;
      this.profile = null;
      this.groupProfile = null;
      /** @internal */
      this._incoming = false;
      /** @internal */
      this._readBy = null;
      /** @internal The client id on the wire. */
      this._key = "";
      this.sending = false;
    }
    isIncoming() {
      return this._incoming;
    }
    isOutgoing() {
      return !this._incoming;
    }
    isGroupMessage() {
      return this.groupid > 0;
    }
    isRealtimeMessage() {
      return this.origin === C.MESIBO_ORIGIN_REALTIME;
    }
    isDbMessage() {
      return this.origin === C.MESIBO_ORIGIN_DBMESSAGE;
    }
    isInOutbox() {
      return !this._incoming && this.status === C.MESIBO_MSGSTATUS_OUTBOX;
    }
    isSent() {
      return !this._incoming && this.status >= 1 && this.status < 16;
    }
    isDelivered() {
      return !this._incoming && (this.status === C.MESIBO_MSGSTATUS_DELIVERED || this.status === C.MESIBO_MSGSTATUS_READ);
    }
    isReadByPeer() {
      return !this._incoming && this.status === C.MESIBO_MSGSTATUS_READ;
    }
    isReadByUs() {
      return this._incoming && this.status === C.MESIBO_MSGSTATUS_RECEIVEDREAD;
    }
    isUnread() {
      return this._incoming && this.status === C.MESIBO_MSGSTATUS_RECEIVEDNEW;
    }
    isFailed() {
      return this.status >= 128;
    }
    isModified() {
      return this.edited;
    }
    isDeleted() {
      return this.deleted;
    }
    isForwarded() {
      return this.forwarded;
    }
    getSenderProfile() {
      return this.mesibo ? this.mesibo.getProfile(this.sender) : null;
    }
    getProfile() {
      return this.profile;
    }
    getGroupProfile() {
      return this.groupProfile;
    }
    /** App-defined type: sent (`mtype`) and seen by the receivers as `m.type`. */
    setType(t) {
      this.type = Number(t) || 0;
    }
    /** Kept, not sent (see `expiry`). */
    setExpiry(e) {
      this.expiry = Number(e) || 0;
    }
    enableReadReceipt(on) {
      this.flag = on ? this.flag | C.MESIBO_FLAG_READRECEIPT : this.flag & ~C.MESIBO_FLAG_READRECEIPT;
    }
    enableDeliveryReceipt(on) {
      this.flag = on ? this.flag | C.MESIBO_FLAG_DELIVERYRECEIPT : this.flag & ~C.MESIBO_FLAG_DELIVERYRECEIPT;
    }
    /**
     * Chorus carries files by reference: pass a URL (or `{ url, name?, mime?, size?, filetype? }`)
     * of a file you uploaded. A `File`, or an input element id, throws: there is no upload.
     */
    setContent(content) {
      if (typeof content === "string" && /^https?:\/\//i.test(content)) this.file = { url: content };
      else if (content && typeof content === "object" && typeof content.url === "string") this.file = { ...content };
      else throw new Error("mesibo (Chorus): setContent takes the URL of an uploaded file; Chorus does not upload files");
    }
    /** Sends it; the outcome comes as `Mesibo_onMessageStatus(m)`. Returns 0. */
    send() {
      if (!this.mesibo) throw new Error("mesibo: message has no Mesibo instance");
      if (this.sending) return 0;
      this.sending = true;
      this.mesibo._send(this);
      return 0;
    }
    /**
     * Edits one of your sent messages: change `message` (and/or `data`), then `sendUpdate()`.
     * Everyone in the conversation (you too) gets `Mesibo_onMessageUpdate(m)`. Returns false if
     * the message is not yours or not sent yet.
     */
    sendUpdate() {
      if (!this.mesibo || this._incoming || !this.mid) return false;
      const content = {};
      if (this.message || this.data === void 0) content.text = this.message;
      if (this.data !== void 0) content.data = this.data;
      this.mesibo._retract("sendUpdate", (c) => c.edit(this.mid, content));
      return true;
    }
    /**
     * Deletes one of your sent messages for everyone (a tombstone stays: `isDeleted()`); everyone
     * gets `Mesibo_onMessageUpdate(m)`. Returns false if the message is not yours or not sent yet.
     */
    recall() {
      if (!this.mesibo || this._incoming || !this.mid) return false;
      this.mesibo._retract("recall", (c) => c.delete(this.mid));
      return true;
    }
    /** Same as `recall()`: Chorus keeps no local copy to wipe. */
    wipeAndRecall() {
      return this.recall();
    }
    /**
     * Deletes the message here only: it leaves the read sessions' lists of this page. Chorus keeps
     * no local copy, so history read again still has it; `recall()` deletes it for everyone.
     */
    delete() {
      if (!this.mesibo) return false;
      this.mesibo._dropLocal(this);
      return true;
    }
    /** Same as `delete()`. */
    wipe() {
      return this.delete();
    }
    /** A new outgoing message to `to` (a profile) with this message's content; call `send()` on it. */
    forward(to) {
      if (!to || typeof to.newMessage !== "function") throw new Error("mesibo: forward(profile) needs a profile");
      const m = to.newMessage();
      m.message = this.message;
      m.title = this.title;
      m.data = this.data;
      m.file = this.file ? { ...this.file } : void 0;
      m.type = this.type;
      m.forwarded = true;
      return m;
    }
    /** @internal The conversation of this message. */
    _conv() {
      return this.groupid > 0 ? { gid: this.groupid } : { peer: this.peer };
    }
  };
  function receivedStatus(read) {
    return read ? C.MESIBO_MSGSTATUS_RECEIVEDREAD : C.MESIBO_MSGSTATUS_RECEIVEDNEW;
  }
  function fromChorus(mesibo, m, origin, self, readSeq = -1) {
    const mm = new MesiboMessage(mesibo);
    const prefixed = /^mz[0-9a-f]{8}-(.+)$/.exec(m.id);
    const id = prefixed ? prefixed[1] : m.id;
    mm.id = /^\d{1,15}$/.test(id) ? Number(id) : id;
    mm.mid = m.mid;
    mm.sender = m.from;
    mm._incoming = m.from !== self;
    if (m.gid !== void 0) {
      mm.groupid = m.gid;
      mm.peer = m.from;
      mm.groupProfile = mesibo.getGroupProfile(m.gid);
      mm.profile = mesibo.getProfile(m.from);
    } else {
      mm.peer = mm._incoming ? m.from : m.peer ?? "";
      mm.profile = mesibo.getProfile(mm.peer);
    }
    mm.message = m.text ?? "";
    mm.data = m.data;
    mm.file = m.file;
    if (m.file) {
      mm.filetype = m.file.filetype ?? 0;
      mm.size = m.file.size ?? 0;
      const base = mesibo.getServer();
      try {
        mm.fileurl = base ? new URL(m.file.url, `${base}/`).toString() : m.file.url;
      } catch {
        mm.fileurl = m.file.url;
      }
    }
    if (m.file?.name) mm.title = m.file.name;
    mm.type = m.mtype;
    mm.ts = m.ts;
    mm.seq = m.seq;
    mm.origin = origin;
    mm.edited = m.edited;
    mm.deleted = m.deleted;
    mm.expiry = 0;
    mm.status = mm._incoming ? receivedStatus(m.seq <= readSeq) : C.MESIBO_MSGSTATUS_SENT;
    return mm;
  }
  var MesiboReadSession = class {
    /** @internal */
    constructor(mesibo, conv, listener, onRead = null) {
      this.mesibo = mesibo;
      this.conv = conv;
      this.listener = listener;
      this.onRead = onRead;
      /** Oldest first; sends not yet answered by the server at the end. */
      this.list = [];
      this.before = void 0;
      this.done = false;
      this.readReceipt = false;
      this.fifo = false;
      this.stopped = false;
      this.highestIncoming = 0;
      mesibo._sessions.add(this);
    }
    /** Sends read receipts for what it reads, and for live messages of the conversation while open. */
    enableReadReceipt(on) {
      this.readReceipt = !!on;
    }
    /** Oldest first within each page (default: newest first, as Mesibo). */
    enableFifo(on) {
      this.fifo = !!on;
    }
    /** No-op: summary sessions (one entry per conversation) are not supported; use `Mesibo.getSortedProfiles()`. */
    enableSummary(_on) {
      console.warn("mesibo (Chorus): enableSummary is not supported (no-op)");
    }
    /** No-op: read sessions always read from the server; there is no local database to sync. Calls `cb(0)`. */
    sync(_count, cb) {
      if (typeof cb === "function") setTimeout(() => cb(0), 0);
    }
    /**
     * The conversation as this session knows it, oldest first: what `read()` read, live messages
     * while open, and this page's sends (with their status updated in place). The session's own
     * array: read it, don't change it.
     */
    getMessages() {
      return this.list;
    }
    /** Reads up to `count` older messages; resolves (and calls `cb`/`on_read`) with the number delivered. */
    async read(count, cb) {
      let n = 0;
      try {
        if (!this.done && !this.stopped) {
          const client = await this.mesibo._client();
          const opts = { limit: Math.max(1, Math.min(count || 50, 200)) };
          if (this.before !== void 0) opts.before = this.before;
          const page = await client.history(this.conv, opts);
          if (page.before === null || page.messages.length === 0) this.done = true;
          else this.before = page.before;
          const self = this.mesibo.getAddress();
          const msgs = page.messages.map((m) => fromChorus(this.mesibo, m, C.MESIBO_ORIGIN_DBMESSAGE, self));
          if (!this.fifo) msgs.reverse();
          const target = this.listener ? [this.listener] : this.onRead ? [] : this.mesibo._listeners;
          for (const m of msgs) {
            if (m.isIncoming()) this.highestIncoming = Math.max(this.highestIncoming, m.seq);
            this.add(m);
          }
          for (const m of msgs) fire(target, "Mesibo_onMessage", m, m.message);
          n = msgs.length;
          if (this.readReceipt && this.highestIncoming > 0) await this.markRead(this.highestIncoming);
        }
      } catch (e) {
        this.mesibo._error("read", e);
      }
      if (typeof cb === "function") cb(n);
      if (this.onRead) this.onRead(n);
      return n;
    }
    /** Unread count of the conversation (REST `GET /v1/conversations`). */
    async getUnreadCount(cb) {
      let n = 0;
      try {
        const client = await this.mesibo._client();
        const list = await client.rest.conversations();
        const c = list.find((x) => this.conv.gid !== void 0 ? x.gid === this.conv.gid : x.peer === this.conv.peer);
        n = c?.unread ?? 0;
      } catch (e) {
        this.mesibo._error("getUnreadCount", e);
      }
      if (typeof cb === "function") cb(n);
      return n;
    }
    /** Closes the session (no more read receipts). */
    stop() {
      this.stopped = true;
      this.mesibo._sessions.delete(this);
    }
    /** @internal A live message arrived in some conversation. */
    _live(m) {
      if (this.stopped || !this.mine(m)) return;
      this.add(m);
      if (!this.readReceipt || !m.isIncoming() || m.seq <= this.highestIncoming) return;
      this.highestIncoming = m.seq;
      void this.markRead(m.seq);
    }
    /** @internal This page sends `m`. */
    _own(m) {
      if (!this.stopped && this.mine(m)) this.add(m);
    }
    /** @internal The server stored `m` (it has its `seq` now): move it to its place. */
    _sent(m) {
      const i = this.list.indexOf(m);
      if (i < 0) return;
      this.list.splice(i, 1);
      for (let j = this.list.length - 1; j >= 0; j--) if (this.list[j]?.mid === m.mid) this.list.splice(j, 1);
      this.add(m);
    }
    /** @internal An edit or deletion of a message (`m` carries the new content). */
    _update(m) {
      const old = this.list.find((x) => x.mid === m.mid && x.mid !== 0);
      if (!old) return;
      old.message = m.message;
      old.data = m.data;
      old.file = m.file;
      old.edited = m.edited;
      old.deleted = m.deleted;
    }
    /** @internal `m` was deleted locally (`m.delete()`). */
    _drop(m) {
      const i = this.list.findIndex((x) => x === m || m.mid !== 0 && x.mid === m.mid);
      if (i >= 0) this.list.splice(i, 1);
    }
    mine(m) {
      return this.conv.gid !== void 0 ? m.groupid === this.conv.gid : m.groupid === 0 && m.peer === this.conv.peer;
    }
    /** Inserts by `seq` (unsent messages, seq 0, stay last); a message already listed (same mid) is not added again. */
    add(m) {
      if (this.list.includes(m) || m.mid !== 0 && this.list.some((x) => x.mid === m.mid)) return;
      if (m.seq === 0) {
        this.list.push(m);
        return;
      }
      let i = this.list.length;
      while (i > 0) {
        const prev = this.list[i - 1];
        if (prev.seq !== 0 && prev.seq < m.seq) break;
        i--;
      }
      this.list.splice(i, 0, m);
    }
    async markRead(seq) {
      try {
        const client = await this.mesibo._client();
        await client.read(this.conv.gid !== void 0 ? { gid: this.conv.gid, seq } : { peer: this.conv.peer, seq });
      } catch (e) {
        this.mesibo._error("read receipt", e);
      }
    }
  };

  // src/mesibo/profile.ts
  var MesiboMember = class {
    constructor(mesibo, address, name, flags, adminFlags) {
      this.mesibo = mesibo;
      this.address = address;
      this.name = name;
      this.flags = flags;
      this.adminFlags = adminFlags;
    }
    getAddress() {
      return this.address;
    }
    getProfile() {
      return this.mesibo.getProfile(this.address);
    }
    getName() {
      return this.name;
    }
    getFlags() {
      return this.flags;
    }
    getAdminFlags() {
      return this.adminFlags;
    }
    isAdmin() {
      return (this.adminFlags & ~C.MESIBO_ADMINFLAG_OWNER) !== 0 || (this.flags & C.MESIBO_MEMBERFLAG_ADMIN) !== 0;
    }
    isOwner() {
      return (this.adminFlags & C.MESIBO_ADMINFLAG_OWNER) !== 0;
    }
  };
  function groupError(e, pinOp = false) {
    const code = e instanceof ChorusError ? e.code : "internal";
    switch (code) {
      case "pin_invalid":
        return C.MESIBO_GROUPERR_BADPIN;
      case "forbidden":
        return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_PERMISSION;
      case "not_found":
        return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_NOTMEMBER;
      case "bad_request":
      case "rate_limited":
        return pinOp ? C.MESIBO_GROUPERR_BADPIN : C.MESIBO_GROUPERR_GENERAL;
      case "unauthorized":
        return C.MESIBO_GROUPERR_ACCESSDENIED;
      default:
        return C.MESIBO_GROUPERR_GENERAL;
    }
  }
  function settingsOf(g2) {
    return {
      name: g2.name,
      flags: g2.flags,
      callFlags: g2.call_flags,
      callDuration: g2.call_duration,
      videoResolution: g2.video_resolution,
      expiry: 0
    };
  }
  function permissionsOf(g2, flags, adminFlags) {
    return {
      flags,
      adminFlags,
      callFlags: g2?.call_flags ?? 0,
      callDuration: g2?.call_duration ?? 0,
      videoResolution: g2?.video_resolution ?? 0,
      expiry: 0
    };
  }
  var MesiboProfile = class {
    /** @internal */
    constructor(mesibo, address, groupid, name = "") {
      this.mesibo = mesibo;
      /** Group: the last settings fetched. */
      this.settings = null;
      /** Group: your permissions, as last fetched. */
      this.permissions = null;
      /** Presence as last seen on this connection. */
      this.online = false;
      this.typing = false;
      /** `getMembers` paging: the list read at the last restart, and how much of it was given. */
      this.memberList = null;
      this.memberCursor = 0;
      this.address = address;
      this.groupid = groupid;
      this.name = name;
    }
    getAddress() {
      return this.address;
    }
    getGroupId() {
      return this.groupid;
    }
    /** The display name, when known (from the session, group listings, call rosters); else the address or `Group <gid>`. */
    getName() {
      return this.name || (this.groupid ? `Group ${this.groupid}` : this.address);
    }
    setName(name) {
      this.name = name;
    }
    isGroup() {
      return this.groupid > 0;
    }
    isSelfProfile() {
      return !this.groupid && this.address === this.mesibo.getAddress();
    }
    /** The group profile (this object for a group), else null. */
    getGroupProfile() {
      return this.groupid > 0 ? this : null;
    }
    isOnline() {
      return this.online;
    }
    isTyping() {
      return this.typing;
    }
    /** A new outgoing message to this user or group; set `message` (and more), then `send()`. */
    newMessage(id) {
      const m = new MesiboMessage(this.mesibo);
      m.id = id ?? this.mesibo.random();
      if (this.groupid) m.groupid = this.groupid;
      else m.peer = this.address;
      m.profile = this.groupid ? null : this;
      m.groupProfile = this.groupid ? this : null;
      return m;
    }
    /**
     * A read session over this conversation (see `MesiboReadSession`): `listener` an object (its
     * `Mesibo_onMessage` gets what `read()` reads) or a function `on_read(count)` (what is read goes
     * only to the session's list, `getMessages()`).
     */
    createReadSession(listener) {
      if (typeof listener === "function") return new MesiboReadSession(this.mesibo, this.conv(), null, listener);
      return new MesiboReadSession(this.mesibo, this.conv(), listener ?? null);
    }
    /** Typing started (`presence 3` for the peer or the group's members). */
    sendTyping() {
      this.mesibo._typing(this.conv(), true);
    }
    /** Typing stopped. */
    sendTypingCleared() {
      this.mesibo._typing(this.conv(), false);
    }
    // ---------------------------------------------------------------- groups
    /**
     * Adds a pin carrying `permissions` (`{flags, adminFlags}`); then `Mesibo_onGroupSettings`
     * with all pins. `expiry` (seconds) and `count` (uses) map to the pin's expiry and use limit.
     */
    addPin(permissions, listener, expiry, count) {
      const p = typeof permissions === "number" ? { flags: permissions } : permissions ?? {};
      void this.groupOp("addPin", listener, true, async (client) => {
        const opts = {
          flags: p.flags ?? C.MESIBO_MEMBERFLAG_ALL
        };
        if (p.adminFlags) opts.admin_flags = p.adminFlags;
        const exp = expiry ?? (p.expiry || void 0);
        if (exp) opts.expires_in = exp;
        if (count) opts.uses = count;
        await client.rest.createPin(this.groupid, opts);
        await this.reportSettings(listener);
      });
    }
    /** Revokes a pin; then `Mesibo_onGroupSettings`. */
    removePin(pin, listener) {
      void this.groupOp("removePin", listener, false, async (client) => {
        await client.rest.revokePin(this.groupid, String(pin));
        await this.reportSettings(listener);
      });
    }
    /**
     * Changes a pin: `permissions` (`{flags, adminFlags}`, or the flags as a number) as for
     * `addPin`, `expiry` (seconds from now) and `count` (uses from now); what is not given (or 0)
     * is kept. Then `Mesibo_onGroupSettings` with all pins; a refusal (e.g. admin rights the caller
     * may not grant) is `Mesibo_onGroupError`.
     */
    editPin(pin, permissions, expiry, count, listener) {
      const p = typeof permissions === "number" ? { flags: permissions } : permissions ?? {};
      void this.groupOp("editPin", listener, false, async (client) => {
        const opts = {};
        if (p.flags !== void 0) opts.flags = p.flags;
        if (p.adminFlags !== void 0) opts.admin_flags = p.adminFlags;
        const exp = expiry || p.expiry || void 0;
        if (exp) opts.expires_in = exp;
        if (count) opts.uses = count;
        await client.rest.editPin(this.groupid, String(pin), opts);
        await this.reportSettings(listener);
      });
    }
    /** Joins the group with a pin → `Mesibo_onGroupJoined(profile)`; a bad pin → `Mesibo_onGroupError(profile, MESIBO_GROUPERR_BADPIN)`. */
    join(pin, listener) {
      void this.groupOp("join", listener, true, async (client) => {
        const g2 = await client.joinGroup(this.groupid, String(pin));
        this.applyGroup(g2);
        this.mesibo._rememberGroup(this);
        fire(this.mesibo._targets(listener), "Mesibo_onGroupJoined", this);
      });
    }
    /** Leaves the group → `Mesibo_onGroupLeft(profile)`. */
    leave(listener) {
      void this.groupOp("leave", listener, false, async (client) => {
        await client.rest.leaveGroup(this.groupid);
        this.mesibo._forgetGroup(this.groupid);
        fire(this.mesibo._targets(listener), "Mesibo_onGroupLeft", this);
      });
    }
    /** Deletes the group (owner) → `Mesibo_onGroupLeft(profile)`. */
    deleteGroup(listener) {
      void this.groupOp("deleteGroup", listener, false, async (client) => {
        await client.rest.deleteGroup(this.groupid);
        this.mesibo._forgetGroup(this.groupid);
        fire(this.mesibo._targets(listener), "Mesibo_onGroupLeft", this);
      });
    }
    /** `Mesibo_onGroupSettings(profile, settings, permissions, pins)`. Pins are listed only to members who may list them. */
    getSettings(listener) {
      void this.groupOp("getSettings", listener, false, () => this.reportSettings(listener));
    }
    /** Changes name, flags, callFlags, videoResolution, callDuration; then `Mesibo_onGroupSettings`. */
    setProperties(settings, listener) {
      void this.groupOp("setProperties", listener, false, async (client) => {
        const s = {};
        if (settings.name !== void 0) s.name = settings.name;
        if (settings.flags !== void 0) s.flags = settings.flags;
        if (settings.callFlags !== void 0) s.call_flags = settings.callFlags;
        if (settings.videoResolution !== void 0) s.video_resolution = settings.videoResolution;
        if (settings.callDuration !== void 0) s.call_duration = settings.callDuration;
        await client.rest.updateGroup(this.groupid, s);
        await this.reportSettings(listener);
      });
    }
    /**
     * `Mesibo_onGroupMembers(profile, members[])`, Mesibo's paging: up to `count` members per call
     * (`count` ≤ 0: all), the next ones on the next call, from the first again with `restart`; past
     * the end an empty list. The list is read from the server (all its pages) on the first call
     * and on each `restart`, so a page shows the members as they were then.
     */
    getMembers(count, restart, listener) {
      void this.groupOp("getMembers", listener, false, async (client) => {
        if (restart || !this.memberList) {
          const list = await client.members(this.groupid);
          this.memberList = list.map((m) => {
            this.mesibo._learnName(m.address, m.name);
            return new MesiboMember(this.mesibo, m.address, m.name, m.flags, m.admin_flags);
          });
          this.memberCursor = 0;
        }
        const n = Number(count) > 0 ? Number(count) : this.memberList.length;
        const members = this.memberList.slice(this.memberCursor, this.memberCursor + n);
        this.memberCursor += members.length;
        fire(this.mesibo._targets(listener), "Mesibo_onGroupMembers", this, members);
      });
    }
    /**
     * Adds (or updates) members: `addMembers(addresses, memberFlags, adminFlags)` or
     * `addMembers(addresses, {flags, adminFlags})`. A pin as the third argument is not supported
     * (Mesibo's shared-pin form): it gives `Mesibo_onGroupError(profile, MESIBO_GROUPERR_NOTSHAREDPIN)`.
     * Success → `Mesibo_onGroupMembersJoined(profile, addresses)` from the server's group event.
     */
    addMembers(addresses, flags, adminFlags, listener) {
      const list = Array.isArray(addresses) ? addresses : String(addresses).split(",").map((s) => s.trim()).filter(Boolean);
      let f;
      let a;
      if (typeof flags === "object" && flags) {
        f = flags.flags;
        a = flags.adminFlags;
        if (adminFlags !== void 0) {
          fire(this.mesibo._targets(listener), "Mesibo_onGroupError", this, C.MESIBO_GROUPERR_NOTSHAREDPIN);
          return;
        }
      } else {
        f = flags;
        a = typeof adminFlags === "number" ? adminFlags : void 0;
      }
      void this.groupOp("addMembers", listener, false, async (client) => {
        const perms = {};
        if (f !== void 0) perms.flags = f;
        if (a !== void 0) perms.admin_flags = a;
        await client.rest.addMembers(this.groupid, list, perms);
      });
    }
    /** Removes members (one REST call each). */
    removeMembers(addresses, listener) {
      const list = Array.isArray(addresses) ? addresses : String(addresses).split(",").map((s) => s.trim()).filter(Boolean);
      void this.groupOp("removeMembers", listener, false, async (client) => {
        for (const a of list) await client.rest.removeMember(this.groupid, a);
      });
    }
    /** @internal */
    applyGroup(g2) {
      this.name = g2.name;
      this.settings = settingsOf(g2);
      if (g2.membership) this.permissions = permissionsOf(g2, g2.membership.flags, g2.membership.admin_flags);
    }
    conv() {
      return this.groupid ? { gid: this.groupid } : { peer: this.address };
    }
    async reportSettings(listener) {
      const client = await this.mesibo._client();
      const g2 = await client.group(this.groupid);
      this.applyGroup(g2);
      let pins = [];
      try {
        pins = await client.pins(this.groupid);
      } catch (e) {
        if (!(e instanceof ChorusError && (e.code === "forbidden" || e.code === "not_found"))) throw e;
      }
      const list = pins.map((p) => ({ pin: p.pin, label: p.label, permissions: permissionsOf(g2, p.flags, p.admin_flags) }));
      fire(this.mesibo._targets(listener), "Mesibo_onGroupSettings", this, this.settings, this.permissions, list);
    }
    async groupOp(op, listener, pinOp, fn) {
      if (!this.groupid) {
        fire(this.mesibo._targets(listener), "Mesibo_onGroupError", this, C.MESIBO_GROUPERR_GENERAL);
        return;
      }
      try {
        await fn(await this.mesibo._client());
      } catch (e) {
        console.warn(`mesibo: ${op} failed:`, e);
        fire(this.mesibo._targets(listener), "Mesibo_onGroupError", this, groupError(e, pinOp && op === "join"));
      }
    }
    /** @internal */
    _presence(f) {
      if (f.presence === 1) this.online = true;
      if (f.presence === 2) this.online = false;
      if (f.presence === 3 || f.presence === 4 || f.presence === 2) {
        this.typing = f.presence === 3;
        clearTimeout(this.typingTimer);
        if (this.typing) this.typingTimer = setTimeout(() => this.typing = false, 5e3);
      }
    }
  };

  // src/mesibo/groupcall.ts
  function leaveReason(r) {
    switch (r) {
      case "left":
        return C.MESIBOCALL_HANGUP_REASON_USER;
      case "duration":
        return C.MESIBOCALL_HANGUP_REASON_DURATION;
      case "lost":
      case "slow":
        return C.MESIBOCALL_HANGUP_REASON_ERROR;
      default:
        return C.MESIBOCALL_HANGUP_REASON_REMOTE;
    }
  }
  function streamEndReason(r, local) {
    return local && r === "unpublished" ? C.MESIBOCALL_HANGUP_REASON_USER : C.MESIBOCALL_HANGUP_REASON_REMOTE;
  }
  function docGet(id) {
    const d = globalThis.document;
    return d ? d.getElementById(id) : null;
  }
  function play(el) {
    el.autoplay = true;
    if ("playsInline" in el) el.playsInline = true;
    const p = typeof el.play === "function" ? el.play() : void 0;
    if (p && typeof p.catch === "function") {
      p.catch((e) => {
        if (e instanceof Error && e.name === "NotAllowedError" && !el.muted) {
          console.warn("mesibo: autoplay with sound was blocked; playing the element muted");
          el.muted = true;
          void el.play().catch(() => void 0);
        }
      });
    }
  }
  var MesiboParticipant = class {
    /** @internal */
    constructor(gc, local, address, sid, name) {
      this.gc = gc;
      this.local = local;
      this.listener = null;
      this.calling = false;
      this.connected = false;
      this.ended = false;
      this.videoSource = C.MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT;
      this.videoSourceIndex = 0;
      this.sourceHeight = null;
      this.view = null;
      this.media = null;
      /** @internal */
      this._ls = null;
      /** @internal */
      this._rs = null;
      this.announcedTracks = /* @__PURE__ */ new Set();
      this.localMute = { audio: false, video: false };
      this.lastRemoteMute = "";
      this.gen1 = null;
      this.offRs = [];
      /** The error that ended the last `call()`, if any (`{code, message}`; Chorus extension). */
      this.lastError = null;
      this.address = address;
      this.sid = sid;
      this._name = name;
    }
    // ---------------------------------------------------------------- identity
    /** One number per user in this page (not the server uid: Chorus shows addresses only). */
    getId() {
      return this.gc._mesibo._idFor(this.address);
    }
    getUid() {
      return this.local ? this.gc._mesibo.getUid() || this.getId() : this.getId();
    }
    getSid() {
      return this.sid;
    }
    /** The stream id (Mesibo's type: 0 camera, > 0 screens and further cameras). */
    getType() {
      return this.sid;
    }
    getName() {
      return this._name || this.gc._nameOf(this.address);
    }
    /** Sets the name shown locally. Chorus streams carry no names of their own: others see the user's name. */
    setName(name) {
      this._name = String(name ?? "");
    }
    getAddress() {
      return this.address;
    }
    getProfile() {
      return this.gc._mesibo.getProfile(this.address);
    }
    isLocal() {
      return this.local;
    }
    isMe() {
      return this.local;
    }
    isPublisher() {
      return this.local;
    }
    getGroupCall() {
      return this.gc;
    }
    hasVideo() {
      if (this.local) return !!this.media?.getVideoTracks().length;
      return !!this._rs?.info.video;
    }
    hasAudio() {
      if (this.local) return !!this.media?.getAudioTracks().length;
      return !!this._rs?.info.audio;
    }
    isVideoCall() {
      return this.hasVideo();
    }
    isCallInProgress() {
      return this.calling && !this.ended;
    }
    isCallConnected() {
      return this.connected;
    }
    /** Talk detection (the server's VAD on the user's audio). */
    isTalking() {
      return this.gc._talking(this.address);
    }
    // ---------------------------------------------------------------- media source (publishers)
    /** `MESIBOCALL_VIDEOSOURCE_CAMERADEFAULT | CAMERAFRONT | CAMERAREAR | SCREEN`; `index` picks the n-th camera. Returns this. */
    setVideoSource(source, index = 0) {
      this.videoSource = Number(source) || 0;
      this.videoSourceIndex = Number(index) || 0;
      return this;
    }
    getVideoSource() {
      return this.videoSource;
    }
    call(a, b, c, d) {
      let audio = true;
      let video = true;
      const gen1 = a === null || typeof a === "object" || typeof b === "string" || typeof c === "function" || typeof d === "function";
      if (gen1) {
        const o = a && typeof a === "object" ? a : {};
        audio = o.audio !== false;
        video = o.video !== false;
        if (o.name) this._name = o.name;
        if (o.source === "screen" || o.source === C.MESIBOCALL_VIDEOSOURCE_SCREEN) this.videoSource = C.MESIBOCALL_VIDEOSOURCE_SCREEN;
        else if (typeof o.source === "string" && SOURCE_HEIGHT[o.source]) this.sourceHeight = SOURCE_HEIGHT[o.source];
        else if (typeof o.source === "number") this.videoSource = o.source;
        this.gen1 = {
          elementId: typeof b === "string" ? b : null,
          onStream: typeof c === "function" ? c : null,
          onStatus: typeof d === "function" ? d : null
        };
      } else {
        if (a !== void 0) audio = !!a;
        if (b !== void 0) video = !!b;
        if (c) this.listener = c;
      }
      if (this.calling && !this.ended) return false;
      this.calling = true;
      this.ended = false;
      this.lastError = null;
      this.connected = false;
      this.announcedTracks.clear();
      void (this.local ? this.publish(audio, video) : this.subscribe(audio, video));
      return true;
    }
    /** Stops publishing (yours) or viewing (another's) → `MesiboGroupcall_OnHangup(p, MESIBOCALL_HANGUP_REASON_USER)`. */
    hangup() {
      if (!this.calling || this.ended) return;
      const call = this.gc._callNow();
      if (call && call.active) {
        const op = this.local ? this._ls ? call.unpublish(this.sid) : Promise.resolve() : this._rs?.unsubscribe() ?? Promise.resolve();
        op.catch((e) => this.gc._mesibo._error("hangup", e));
      }
      this._ended(C.MESIBOCALL_HANGUP_REASON_USER);
    }
    async publish(audio, video) {
      try {
        const call = await this.gc._joined();
        if (!call.permissions.publish) throw new ChorusError("forbidden", "you may not publish in this group call (no MESIBO_MEMBERFLAG_PUBL)");
        if (!audio && !video) throw new ChorusError("bad_request", "nothing to publish");
        const screen = this.videoSource === C.MESIBOCALL_VIDEOSOURCE_SCREEN;
        const md = globalThis.navigator?.mediaDevices;
        if (!md) throw new ChorusError("webrtc", "navigator.mediaDevices is not available");
        let media;
        if (screen) {
          media = await md.getDisplayMedia({ video: true, audio: false });
          if (audio) {
            const mic = await md.getUserMedia({ audio: true });
            for (const t of mic.getAudioTracks()) media.addTrack(t);
          }
        } else {
          const cap = call.settings.max_height ?? 0;
          const res = RESOLUTION_HEIGHT[this.gc._videoResolution()] ?? 0;
          let h = this.sourceHeight ?? (res || 720);
          if (cap > 0) h = Math.min(h, cap);
          const v = { height: { ideal: h }, width: { ideal: Math.round(h * 16 / 9) } };
          if (this.videoSource === C.MESIBOCALL_VIDEOSOURCE_CAMERAFRONT) v.facingMode = "user";
          if (this.videoSource === C.MESIBOCALL_VIDEOSOURCE_CAMERAREAR) v.facingMode = "environment";
          if (this.videoSourceIndex > 0 && typeof md.enumerateDevices === "function") {
            const cams = (await md.enumerateDevices()).filter((x) => x.kind === "videoinput");
            const cam = cams[this.videoSourceIndex];
            if (cam) v.deviceId = { exact: cam.deviceId };
          }
          media = await md.getUserMedia({ audio: audio && call.settings.audio, video: video && call.settings.video ? v : false });
        }
        if (this.ended) {
          media.getTracks().forEach((t) => t.stop());
          return;
        }
        this.media = media;
        const at = media.getAudioTracks()[0];
        const vt = media.getVideoTracks()[0];
        if (vt) vt.addEventListener?.("ended", () => this.hangup());
        if (vt) this.onMedia("video", vt);
        if (at) this.onMedia("audio", at);
        const opts = { screen };
        if (at) opts.audio = at;
        if (vt) opts.video = vt;
        if (this.localMute.audio || this.localMute.video) opts.muted = { ...this.localMute };
        this._ls = await call.publish(this.sid, opts);
        if (this.ended) {
          void call.unpublish(this.sid).catch(() => void 0);
          return;
        }
        this.setConnected(true);
      } catch (e) {
        this.failed(e);
      }
    }
    async subscribe(audio, video) {
      try {
        const call = await this.gc._joined();
        const rs = this._rs ?? call.stream(this.address, this.sid) ?? null;
        if (!rs || rs.ended) throw new ChorusError("not_found", "the stream has ended");
        this._bindRemote(rs);
        await rs.subscribe({ audio, video });
        if (this.ended) return;
        this.setConnected(true);
        for (const t of [rs.tracks.video, rs.tracks.audio]) if (t) this.onMedia(t.kind, t);
      } catch (e) {
        this.failed(e);
      }
    }
    failed(e) {
      console.warn(`mesibo: ${this.local ? "publish" : "subscribe"} of ${this.address}/${this.sid} failed:`, e);
      this.media?.getTracks().forEach((t) => t.stop());
      this.media = null;
      if (this.ended) return;
      const code = e instanceof ChorusError ? e.code : "webrtc";
      this.lastError = { code, message: e instanceof Error ? e.message : String(e) };
      this._ended(
        C.MESIBOCALL_HANGUP_REASON_ERROR,
        code === "forbidden" ? C.MESIBO_CALLSTATUS_NOTALLOWED : C.MESIBO_CALLSTATUS_ERROR
      );
    }
    getError() {
      return this.lastError;
    }
    setConnected(on) {
      if (this.connected === on) return;
      this.connected = on;
      this.fireP("MesiboGroupcall_OnConnected", this, on);
      if (on) this.gen1?.onStatus?.(this, C.MESIBO_CALLSTATUS_CHANNELUP);
    }
    onMedia(kind, t) {
      if (!this.calling || this.ended || this.announcedTracks.has(t)) return;
      this.announcedTracks.add(t);
      if (!this.local && this.localMute[kind]) t.enabled = false;
      if (this.view) this.attachView(this.view);
      if (kind === "video") {
        this.fireP("MesiboGroupcall_OnVideo", this);
        if (this.gen1) {
          if (this.gen1.elementId) this.setVideoView(this.gen1.elementId, void 0, 100, 20);
          this.gen1.onStream?.(this);
        }
      } else {
        this.fireP("MesiboGroupcall_OnAudio", this);
        if (this.gen1 && !this.hasVideo()) this.gen1.onStream?.(this);
      }
    }
    /** @internal Wires a remote stream's events once. */
    _bindRemote(rs) {
      if (this._rs === rs && this.offRs.length) return;
      for (const off of this.offRs) off();
      this._rs = rs;
      this.offRs = [
        rs.on("track", (ev) => this.onMedia(ev.kind, ev.track)),
        rs.on("muted", () => this._remoteMute())
      ];
    }
    /** @internal The stream ended, or the call did. */
    _ended(reason, status = C.MESIBO_CALLSTATUS_COMPLETE) {
      if (this.ended || !this.calling) {
        this.ended = true;
        return;
      }
      this.ended = true;
      this.calling = false;
      if (this.connected) {
        this.connected = false;
      }
      if (this.local) {
        this.media?.getTracks().forEach((t) => t.stop());
        this.media = null;
        this._ls = null;
        if (this.view && this.view.srcObject) this.view.srcObject = null;
      }
      this.fireP("MesiboGroupcall_OnHangup", this, reason);
      this.gen1?.onStatus?.(this, status);
    }
    /** @internal Stream-level teardown (unsubscribes listeners). */
    _dispose() {
      for (const off of this.offRs) off();
      this.offRs = [];
    }
    // ---------------------------------------------------------------- video views
    /**
     * Shows the video in the element with id `elementId` (retrying every `retryMs` until it exists,
     * at most `maxRetries` times); `cb(true)` once attached, `cb(false)` if it never appeared.
     */
    setVideoView(elementId, cb, retryMs = 100, maxRetries = 10) {
      let tries = 0;
      const attempt = () => {
        const el = docGet(elementId);
        if (el) {
          this.view = el;
          this.attachView(el);
          if (typeof cb === "function") cb(true);
          return;
        }
        if (tries++ >= maxRetries) {
          if (typeof cb === "function") cb(false);
          return;
        }
        setTimeout(attempt, Math.max(10, retryMs || 100));
      };
      attempt();
    }
    /** Gen-1 name of `setVideoView`. */
    attach(elementId, cb, retryMs, maxRetries) {
      this.setVideoView(elementId, cb, retryMs, maxRetries);
    }
    getVideoView() {
      return this.view;
    }
    attachView(el) {
      if (this.local) {
        const vt = this.media?.getVideoTracks()[0];
        if (!vt || typeof MediaStream === "undefined") return;
        const cur = el.srcObject;
        if (!cur || !cur.getVideoTracks().includes(vt)) el.srcObject = new MediaStream([vt]);
        el.muted = true;
        play(el);
        return;
      }
      const rs = this._rs;
      if (!rs || !rs.tracks.video && !rs.tracks.audio) return;
      if (el.srcObject !== rs.mediaStream) rs.attach(el);
      play(el);
    }
    // ---------------------------------------------------------------- mute
    /**
     * Toggles audio: your publisher mutes what it sends (everyone sees `OnMute`); another's stream
     * is muted for you only (the track is disabled locally). Returns the new muted state.
     */
    toggleAudioMute() {
      const m = !this.ownMute().audio;
      this.mute(true, false, m);
      return m;
    }
    toggleVideoMute() {
      const m = !this.ownMute().video;
      this.mute(false, true, m);
      return m;
    }
    /** Mutes (`enable` true) or unmutes the given media. */
    mute(audio, video, enable) {
      const next = { audio: audio ? !!enable : this.ownMute().audio, video: video ? !!enable : this.ownMute().video };
      if (this.local) {
        this.localMute = next;
        const call = this.gc._callNow();
        if (this._ls && call?.active) {
          const m = {};
          if (audio) m.audio = !!enable;
          if (video) m.video = !!enable;
          call.mute(this.sid, m).catch((e) => this.gc._mesibo._error("mute", e));
        } else {
          for (const t of this.media?.getAudioTracks() ?? []) t.enabled = !next.audio;
          for (const t of this.media?.getVideoTracks() ?? []) t.enabled = !next.video;
        }
      } else {
        this.localMute = next;
        const rs = this._rs;
        if (rs?.tracks.audio) rs.tracks.audio.enabled = !next.audio;
        if (rs?.tracks.video) rs.tracks.video.enabled = !next.video;
      }
      this.fireP("MesiboGroupcall_OnMute", this, next.audio, next.video, false);
    }
    /** Gen-1: `toggleMute(video)`. */
    toggleMute(video) {
      return video ? this.toggleVideoMute() : this.toggleAudioMute();
    }
    /**
     * True if muted. `remote` true: muted by the publisher (or an admin); false: muted here
     * (your own mute for your publisher, the local mute for another's stream); absent: either.
     */
    getMuteStatus(video, remote) {
      const k = video ? "video" : "audio";
      const r = this.remoteMute()[k];
      const l = this.ownMute()[k];
      if (remote === true) return r;
      if (remote === false) return l;
      return r || l;
    }
    /** Gen-1 name of `getMuteStatus`. */
    muteStatus(video, remote) {
      return this.getMuteStatus(video, remote);
    }
    ownMute() {
      if (this.local && this._ls) return { audio: this._ls.info.muted.audio, video: this._ls.info.muted.video };
      return { ...this.localMute };
    }
    /** Mute set by the stream's owner or an admin (for your publisher: by an admin). */
    remoteMute() {
      const admin = this.gc._adminMuted(this.address);
      if (this.local) return { ...admin };
      const own = this._rs?.info.muted ?? { audio: false, video: false };
      return { audio: own.audio || admin.audio, video: own.video || admin.video };
    }
    /** @internal The owner's or an admin's mute changed: `OnMute(p, audio, video, true)` if it did for this stream. */
    _remoteMute() {
      const m = this.remoteMute();
      const key = `${m.audio}/${m.video}`;
      if (key === this.lastRemoteMute) return;
      const first = this.lastRemoteMute === "";
      this.lastRemoteMute = key;
      if (first && !m.audio && !m.video) return;
      const l = this.local && this._ls ? this._ls.info.muted : { audio: false, video: false };
      this.fireP("MesiboGroupcall_OnMute", this, m.audio || l.audio, m.video || l.video, true);
      this.gc._participantUpdated(this);
    }
    /** @internal */
    _talking(talking) {
      this.fireP("MesiboGroupcall_OnTalking", this, talking);
      this.gc._participantUpdated(this);
    }
    // ---------------------------------------------------------------- admin
    /** Moderation of this participant (needs admin rights in the group). */
    getAdmin() {
      return new MesiboParticipantAdmin(this.gc, this);
    }
    fireP(name, ...args) {
      const targets = this.listener ? [this.listener] : [...this.gc._callTargets()];
      if (this.gc.gen1) targets.push(...this.gc._mesibo._listeners);
      fire(targets, name, ...args);
    }
  };
  var MesiboParticipantAdmin = class {
    /** @internal */
    constructor(gc, p) {
      this.gc = gc;
      this.p = p;
    }
    /** Mutes (`enable`) or unmutes the user's audio/video for everyone (all the user's streams: Chorus mutes per user). */
    mute(audio, video, enable) {
      return this.gc.getAdmin().mute([this.p], audio, video, enable);
    }
    toggleAudioMute() {
      return this.mute(true, false, !this.gc._adminMuted(this.p.address).audio);
    }
    toggleVideoMute() {
      return this.mute(false, true, !this.gc._adminMuted(this.p.address).video);
    }
    /** Ends this stream (`call_admin hangup`). */
    hangup() {
      return this.gc.getAdmin().hangup([this.p]);
    }
    /** Not supported: Chorus cannot make another user publish. Returns false. */
    publish() {
      console.warn("mesibo (Chorus): remote publish is not supported");
      return false;
    }
    /** Not supported: Chorus cannot make another user subscribe. Returns false. */
    subscribe() {
      console.warn("mesibo (Chorus): remote subscribe is not supported");
      return false;
    }
  };
  var MesiboGroupCallAdmin = class {
    /** @internal */
    constructor(gc) {
      this.gc = gc;
    }
    /** Mutes (`enable` true) or unmutes `audio`/`video` of each participant's user. */
    mute(participants, audio, video, enable) {
      if (!audio && !video) return false;
      const list = Array.isArray(participants) ? participants : [participants];
      const addrs = [...new Set(list.map((p) => p.address))];
      return this.run(
        "mute",
        (call) => Promise.all(addrs.map((address) => call.admin(enable ? "mute" : "unmute", { address, audio: !!audio, video: !!video })))
      );
    }
    /** Mutes or unmutes everyone. */
    muteAll(audio, video, enable) {
      if (!audio && !video) return false;
      return this.run("muteAll", (call) => call.admin(enable ? "mute_all" : "unmute_all", { audio: !!audio, video: !!video }));
    }
    /** Ends each participant stream. */
    hangup(participants) {
      const list = Array.isArray(participants) ? participants : [participants];
      return this.run("hangup", (call) => Promise.all(list.map((p) => call.admin("hangup", { address: p.address, sid: p.sid }))));
    }
    /** Ends every other participant's streams. */
    hangupAll() {
      return this.run(
        "hangupAll",
        (call) => Promise.all([...call.streams.values()].map((s) => call.admin("hangup", { address: s.address, sid: s.sid })))
      );
    }
    /** Not supported (no server-side layout in Chorus). Returns false. */
    fullscreen(_p) {
      console.warn("mesibo (Chorus): admin fullscreen is not supported");
      return false;
    }
    run(op, fn) {
      const call = this.gc._callNow();
      if (!call || !call.active) {
        this.gc._mesibo._error(op, new ChorusError("state", "not in the call"));
        return false;
      }
      fn(call).catch((e) => this.gc._mesibo._error(op, e));
      return true;
    }
  };
  var MesiboGroupCall = class {
    /** @internal Use `mesibo.groupCall(listener, gid)` or `mesibo.initGroupCall()`. */
    constructor(_mesibo, groupListener, gid, gen1) {
      this._mesibo = _mesibo;
      this.groupListener = groupListener;
      this.gid = gid;
      this.gen1 = gen1;
      /** @internal */
      this._finished = false;
      this.call = null;
      this.joining = null;
      this.joinListener = null;
      this.publishers = /* @__PURE__ */ new Map();
      this.remotes = /* @__PURE__ */ new Map();
      this.offs = [];
      this.userLeft = false;
    }
    /** The group id. */
    getGroupId() {
      return this.gid;
    }
    /** Gen-1: sets the room (group id) and joins its call. */
    setRoom(gid) {
      this.gid = Number(gid);
      this.join();
    }
    /**
     * Joins the call. Streams already published, and later ones, come as
     * `MesiboGroupcall_OnPublisher(p, true)` (gen-1: `Mesibo_onParticipants(all, latest)`); a failure
     * as `Mesibo_onGroupError(groupProfile, error)`.
     */
    join(listener) {
      if (listener) this.joinListener = listener;
      if (this.joining) return true;
      this.userLeft = false;
      this._finished = false;
      const p = (async () => {
        const client = await this._mesibo._client();
        const call = await client.joinCall(this.gid);
        this.wire(call);
        return call;
      })();
      this.joining = p;
      p.catch((e) => {
        if (this.joining === p) this.joining = null;
        console.warn("mesibo: joining the group call failed:", e);
        fire(this.targets(), "Mesibo_onGroupError", this._mesibo.getGroupProfile(this.gid), groupError(e));
      });
      return true;
    }
    /** Leaves the call: your streams end (`OnHangup(p, USER)`) and nothing more is received. */
    leave() {
      this.userLeft = true;
      const call = this.call;
      if (call?.active) void call.leave();
      else this.finish("left");
    }
    /** Your publisher `sid` (0 camera, 1.. screens and further cameras); the same object for the same sid. */
    createPublisher(sid = 0) {
      const s = Number(sid) || 0;
      let p = this.publishers.get(s);
      if (!p) {
        const self = this._mesibo.getSelfProfile();
        p = new MesiboParticipant(this, true, this._mesibo.getAddress() ?? "", s, self?.name ?? "");
        this.publishers.set(s, p);
      }
      return p;
    }
    /**
     * Gen-1: your publisher, with a display name: `getLocalParticipant(name, address)` (the camera,
     * sid 0) or `getLocalParticipant(sid, name, address)`. `address` is accepted and ignored: the
     * stream is published as the logged-in user.
     */
    getLocalParticipant(sidOrName, nameOrAddress, _address) {
      const withSid = typeof sidOrName === "number" || arguments.length >= 3;
      const sid = withSid ? Number(sidOrName) || 0 : 0;
      const name = withSid ? nameOrAddress : sidOrName;
      const p = this.createPublisher(sid);
      if (name !== void 0 && name !== null && name !== "") p.setName(String(name));
      return p;
    }
    /** The remote participant streams known now. */
    getParticipants() {
      return [...this.remotes.values()];
    }
    /**
     * True if you may moderate: `hangup` true asks for the hang-up right, else call control (mute).
     * In the call: the rights the server gave; before joining: your admin flags in the group
     * (`MESIBO_ADMINFLAG_HANGUP`, `CALLCONTROL`) as last loaded.
     */
    hasAdminPermissions(hangup) {
      const perms = this.call?.permissions;
      if (perms) return hangup ? perms.hangup : perms.call_control;
      const admin = this._mesibo.getGroupProfile(this.gid).permissions?.adminFlags ?? 0;
      return (admin & (hangup ? C.MESIBO_ADMINFLAG_HANGUP : C.MESIBO_ADMINFLAG_CALLCONTROL)) !== 0;
    }
    /** Room-wide moderation. */
    getAdmin() {
      return new MesiboGroupCallAdmin(this);
    }
    /** No-op: Chorus plays no in-call sounds. */
    playInCallSound() {
    }
    stopInCallSound() {
    }
    // ---------------------------------------------------------------- internals
    /** @internal */
    _setListener(l) {
      this.groupListener = l;
    }
    /** @internal The listener for group-call callbacks. */
    _listener() {
      return this.joinListener ?? this.groupListener;
    }
    /** @internal Where group-call callbacks go: the call's listener, else the `setListener` objects. */
    _callTargets() {
      const l = this._listener();
      return l ? [l] : this._mesibo._listeners;
    }
    /** @internal */
    _callNow() {
      return this.call;
    }
    /** @internal Waits for the join. */
    _joined() {
      if (this.call?.active) return Promise.resolve(this.call);
      if (this.joining) return this.joining;
      return Promise.reject(new ChorusError("state", "join() the group call first"));
    }
    /** @internal */
    _nameOf(address) {
      return this.call?.participants.get(address)?.name ?? this._mesibo.getProfile(address).getName();
    }
    /** @internal */
    _talking(address) {
      return !!this.call?.participants.get(address)?.talking;
    }
    /** @internal */
    _adminMuted(address) {
      const call = this.call;
      if (!call) return { audio: false, video: false };
      if (address === call.address) return { ...call.adminMuted };
      const m = call.participants.get(address)?.admin_muted;
      return m ? { ...m } : { audio: false, video: false };
    }
    /** @internal */
    _videoResolution() {
      return this._mesibo.getGroupProfile(this.gid).settings?.videoResolution ?? 0;
    }
    /** @internal Gen-1: `Mesibo_onParticipantUpdated(all, p)`. */
    _participantUpdated(p) {
      if (this.gen1) fire(this._mesibo._listeners, "Mesibo_onParticipantUpdated", this.getParticipants(), p);
    }
    /** @internal The Mesibo object stopped. */
    _stopped() {
      this.userLeft = true;
      this.finish("left");
    }
    targets() {
      const l = this._listener();
      return this.gen1 || !l ? this._mesibo._listeners : [l, ...this._mesibo._listeners];
    }
    remoteFor(rs) {
      const key = `${rs.sid}:${rs.address}`;
      let p = this.remotes.get(key);
      if (!p) {
        p = new MesiboParticipant(this, false, rs.address, rs.sid, "");
        this.remotes.set(key, p);
      }
      p._bindRemote(rs);
      return p;
    }
    participantsOf(address) {
      const out = [...this.remotes.values()].filter((p) => p.address === address);
      if (address === this.call?.address) out.push(...this.publishers.values());
      return out;
    }
    /** Gen-1: `Mesibo_onParticipants(all, latest)`, or its singular spelling `Mesibo_onParticipant` for a listener that has only that. */
    participants(latest) {
      const all = this.getParticipants();
      for (const l of new Set(this._mesibo._listeners)) {
        if (fire([l], "Mesibo_onParticipants", all, latest) === 0) fire([l], "Mesibo_onParticipant", all, latest);
      }
    }
    announce(p, joined) {
      if (this.gen1) {
        this.participants(joined ? [p] : []);
        return;
      }
      fire(this._callTargets(), "MesiboGroupcall_OnPublisher", p, joined);
    }
    wire(call) {
      for (const off of this.offs) off();
      this.call = call;
      for (const p of call.participants.values()) this._mesibo._learnName(p.address, p.name);
      this.offs = [
        call.on("participant-joined", (p) => this._mesibo._learnName(p.address, p.name)),
        call.on("stream-published", (rs) => {
          const p = this.remoteFor(rs);
          this.announce(p, true);
          p._remoteMute();
        }),
        call.on("stream-unpublished", (e) => {
          if (e.local) {
            this.publishers.get(e.sid)?._ended(streamEndReason(e.reason, true));
            return;
          }
          const key = `${e.sid}:${e.address}`;
          const p = this.remotes.get(key);
          if (!p) return;
          this.remotes.delete(key);
          p._ended(streamEndReason(e.reason, false));
          p._dispose();
          this.announce(p, false);
        }),
        call.on("muted", (e) => {
          if (e.address === call.address) this.publishers.get(e.sid)?._remoteMute();
        }),
        call.on("participant-updated", (p) => {
          for (const x of this.participantsOf(p.address)) x._remoteMute();
        }),
        call.on("talking", (e) => {
          for (const x of this.participantsOf(e.address)) x._talking(e.talking);
        }),
        call.on("subscriber", (e) => {
          const name = this._nameOf(e.address);
          const s = {
            address: e.address,
            name,
            sid: e.sid,
            getAddress: () => e.address,
            getName: () => name,
            getSid: () => e.sid
          };
          if (this.gen1) fire(this._mesibo._listeners, "Mesibo_onSubscriber", s, e.joined);
          else fire(this._callTargets(), "MesiboGroupcall_OnSubscriber", s, e.joined);
        }),
        call.on("left", (e) => this.finish(e.reason)),
        call.on("error", (e) => this._mesibo._error("groupcall", e))
      ];
      const existing = [...call.streams.values()].filter((rs) => rs.ended === null).map((rs) => this.remoteFor(rs));
      if (this.gen1) {
        if (existing.length) this.participants(existing);
      } else {
        for (const p of existing) fire(this._callTargets(), "MesiboGroupcall_OnPublisher", p, true);
      }
      for (const p of existing) p._remoteMute();
    }
    /** Out of the call (left, removed, dropped): every stream ends. */
    finish(reason) {
      for (const off of this.offs) off();
      this.offs = [];
      const r = this.userLeft ? C.MESIBOCALL_HANGUP_REASON_USER : leaveReason(reason);
      for (const p of this.publishers.values()) p._ended(r);
      const remotes = [...this.remotes.values()];
      this.remotes.clear();
      for (const p of remotes) {
        p._ended(r);
        p._dispose();
        if (!this.userLeft) this.announce(p, false);
      }
      this.call = null;
      this.joining = null;
      this._finished = true;
    }
  };

  // src/mesibo/http.ts
  function formEncode(obj) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(obj)) {
      if (v === void 0 || v === null) continue;
      q.append(k, typeof v === "object" ? JSON.stringify(v) : String(v));
    }
    return q.toString();
  }
  var MesiboHttpRequest = class {
    /** @internal Use `mesibo.createhttpRequest()`. */
    constructor(base, fetchImpl) {
      this.base = base;
      this.fetchImpl = fetchImpl;
      this.url = "";
      this.body = null;
      this.json = false;
      this.headers = {};
    }
    setUrl(url) {
      this.url = String(url ?? "");
    }
    /**
     * `obj`: an object (encoded as form fields, or as JSON when `json` is true), an already encoded
     * string, or a `FormData` / `Blob` sent as it is (a `FormData` with a `file` field is how a page
     * stores a file with `op=upload`; the browser sets the multipart boundary).
     */
    setPostData(obj, json) {
      this.json = !!json;
      if (typeof obj === "string") this.body = obj;
      else if (typeof FormData !== "undefined" && obj instanceof FormData || typeof Blob !== "undefined" && obj instanceof Blob) this.body = obj;
      else if (obj && typeof obj === "object") this.body = this.json ? JSON.stringify(obj) : formEncode(obj);
      else this.body = null;
    }
    /** Chorus extension: an extra request header (e.g. `authorization`). */
    setHeader(name, value) {
      this.headers[String(name)] = String(value);
    }
    /** The URL the request goes to. */
    getUrl() {
      const base = this.base();
      if (!this.url) return `${base}/api`;
      try {
        return new URL(this.url, `${base}/`).toString();
      } catch {
        return this.url;
      }
    }
    /** Sends it; `cb(cbdata, responseText)` when the answer is in (any HTTP status), `cb(cbdata, null)` if none came. Returns true. */
    send(cbdata, cb) {
      const f = this.fetchImpl ?? (typeof fetch === "function" ? fetch.bind(globalThis) : void 0);
      const done = (text) => {
        if (typeof cb !== "function") return;
        try {
          cb(cbdata, text);
        } catch (e) {
          console.error("mesibo: http callback threw", e);
        }
      };
      if (!f) {
        setTimeout(() => done(null), 0);
        return true;
      }
      const headers = { ...this.headers };
      const init = { method: this.body === null ? "GET" : "POST", headers };
      if (this.body !== null) {
        if (typeof this.body === "string" && !Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) {
          headers["content-type"] = this.json ? "application/json" : "application/x-www-form-urlencoded";
        }
        init.body = this.body;
      }
      f(this.getUrl(), init).then(
        (res) => res.text().then(done, () => done(null)),
        (e) => {
          console.warn("mesibo: http request failed:", e);
          done(null);
        }
      );
      return true;
    }
  };

  // src/mesibo/p2p.ts
  var MesiboP2P = class {
    constructor(listeners) {
      this.listeners = listeners;
      this.setup = { video: true, local: null, remote: null };
      this.current = null;
      this.local = null;
      this.media = null;
      this.muted = { audio: false, video: false };
      this.connected = false;
    }
    /** Starts listening for calls ringing on `client`'s session. */
    attach(client) {
      client.on("incoming-call", (call) => {
        if (this.current && !this.current.ended) return;
        this.track(call);
        fire(this.listeners, "Mesibo_onCall", call.id, call.peer, call.video);
      });
    }
    /** The next call is a video call shown in these elements (ids); `enable` false: voice only. */
    setupVideoCall(localVideoId, remoteVideoId, enable = true) {
      this.setup = { video: enable !== false, local: localVideoId ?? null, remote: remoteVideoId ?? null };
    }
    /** The next call is a voice call played in this `<audio>` element. */
    setupVoiceCall(audioElementId) {
      this.setup = { video: false, local: null, remote: audioElementId ?? null };
    }
    /** Calls `address`. Returns 0; what follows comes as `Mesibo_onCallStatus`. */
    call(client, address) {
      if (this.current && !this.current.ended) {
        setTimeout(() => this.status(0, C.MESIBO_CALLSTATUS_INVALIDSTATE), 0);
        return -1;
      }
      void client.then((c) => c.call(String(address ?? ""), { video: this.setup.video })).then((call) => {
        this.track(call);
        if (call.heard) this.status(call.id, call.code);
      }).catch((e) => {
        const status = e instanceof ChorusError && e.status !== void 0 ? e.status : C.MESIBO_CALLSTATUS_ERROR;
        this.status(0, status);
      });
      return 0;
    }
    /** Answers the ringing call (`video` false: answer a video call with audio only). */
    answer(video = true) {
      const call = this.current;
      if (!call || !call.incoming || call.status !== "ringing") return -1;
      const wantVideo = call.video && video !== false && this.setup.video;
      call.answer({ autoSubscribe: true }).then(
        (media) => this.startMedia(call, media, wantVideo),
        () => this.status(call.id, C.MESIBO_CALLSTATUS_INVALIDSTATE)
      );
      return 0;
    }
    /** Hangs up (or cancels, or declines) the call; `callid` 0: the current one. */
    hangup(callid = 0) {
      const call = this.current;
      if (!call || callid && Number(callid) !== call.id) return -1;
      void call.hangup().catch(() => void 0);
      this.stopMedia();
      return 0;
    }
    /** Mutes (`enable` true) or unmutes your audio and/or video. */
    mute(audio, video, enable) {
      if (audio) this.muted.audio = !!enable;
      if (video) this.muted.video = !!enable;
      this.applyMute();
    }
    toggleAudioMute() {
      this.muted.audio = !this.muted.audio;
      this.applyMute();
      return this.muted.audio;
    }
    toggleVideoMute() {
      this.muted.video = !this.muted.video;
      this.applyMute();
      return this.muted.video;
    }
    /** The client stopped: the call is gone with the session. */
    stopped() {
      this.stopMedia();
      this.current = null;
    }
    // ---------------------------------------------------------------- internals
    status(callid, status) {
      fire(this.listeners, "Mesibo_onCallStatus", callid, status);
    }
    track(call) {
      this.current = call;
      this.connected = false;
      const joinAsCaller = () => call.join({ autoSubscribe: true }).then(
        (media) => this.startMedia(call, media, call.video && this.setup.video),
        () => this.status(call.id, C.MESIBO_CALLSTATUS_ERROR)
      );
      call.on("status", (s) => {
        this.status(call.id, s.code);
        if (s.status === "answered" && !call.incoming) void joinAsCaller();
      });
      if (call.status === "answered" && !call.incoming) void joinAsCaller();
      call.on("ended", () => {
        if (this.current === call) {
          this.stopMedia();
          this.current = null;
        }
      });
    }
    async startMedia(call, media, video) {
      this.media = media;
      media.on("track", (ev) => {
        const el = docGet(this.setup.remote ?? "");
        if (el && (ev.kind === "video" || !video)) {
          ev.stream.attach(el);
          play(el);
        }
        if (!this.connected) {
          this.connected = true;
          this.status(call.id, C.MESIBO_CALLSTATUS_CHANNELUP);
        }
      });
      try {
        const md = globalThis.navigator?.mediaDevices;
        if (!md) throw new ChorusError("webrtc", "navigator.mediaDevices is not available");
        const local = await md.getUserMedia({ audio: true, video });
        if (call.ended) {
          local.getTracks().forEach((t) => t.stop());
          return;
        }
        this.local = local;
        this.applyMute();
        const lv = this.setup.local ? docGet(this.setup.local) : null;
        if (lv && video) {
          lv.muted = true;
          lv.srcObject = local;
          play(lv);
        }
        const opts = { simulcast: false };
        const at = local.getAudioTracks()[0];
        const vt = local.getVideoTracks()[0];
        if (at) opts.audio = at;
        if (vt) opts.video = vt;
        await media.publish(0, opts);
      } catch (e) {
        fire(this.listeners, "Mesibo_onError", e);
        this.status(call.id, C.MESIBO_CALLSTATUS_HWERROR);
      }
    }
    applyMute() {
      for (const t of this.local?.getAudioTracks() ?? []) t.enabled = !this.muted.audio;
      for (const t of this.local?.getVideoTracks() ?? []) t.enabled = !this.muted.video;
      const media = this.media;
      if (media?.active) void media.mute(0, { ...this.muted }).catch(() => void 0);
    }
    stopMedia() {
      this.local?.getTracks().forEach((t) => t.stop());
      this.local = null;
      if (this.media?.active) void this.media.leave();
      this.media = null;
      for (const id of [this.setup.local, this.setup.remote]) {
        const el = id ? docGet(id) : null;
        if (el) el.srcObject = null;
      }
    }
  };

  // src/mesibo/mesibo.ts
  var bundleServer;
  function _setBundleServer(scriptSrc) {
    bundleServer = void 0;
    if (!scriptSrc) return;
    try {
      const u = new URL(scriptSrc);
      if (u.protocol === "http:" || u.protocol === "https:") bundleServer = u.origin;
    } catch {
    }
  }
  var CONNECTION_STATUS = {
    idle: C.MESIBO_STATUS_UNKNOWN,
    connecting: C.MESIBO_STATUS_CONNECTING,
    online: C.MESIBO_STATUS_ONLINE,
    offline: C.MESIBO_STATUS_OFFLINE,
    closed: C.MESIBO_STATUS_STOPPED,
    auth_failed: C.MESIBO_STATUS_AUTHFAIL
  };
  var instance = null;
  var Mesibo = class _Mesibo {
    constructor(options = {}) {
      /** @internal */
      this._listeners = [];
      this.p2p = new MesiboP2P(this._listeners);
      /** @internal */
      this._sessions = /* @__PURE__ */ new Set();
      this.appName = "";
      this.token = "";
      this.dbName = null;
      this.client = null;
      /** Live messages waiting for an earlier file message's signed URL (see `onMessage`). */
      this.inbox = null;
      this.profiles = /* @__PURE__ */ new Map();
      this.groups = /* @__PURE__ */ new Map();
      this.memberOf = /* @__PURE__ */ new Set();
      this.calls = /* @__PURE__ */ new Map();
      this.outgoing = /* @__PURE__ */ new Map();
      this.ids = /* @__PURE__ */ new Map();
      /** Conversations, most recently active first (`getSortedProfiles`). */
      this.recent = [];
      this.status = C.MESIBO_STATUS_UNKNOWN;
      this.idPrefix = `mz${Math.floor(Math.random() * 4294967296).toString(16).padStart(8, "0")}`;
      this.options = options;
      this.server = options.server;
      if (!instance) instance = this;
    }
    /** The first `Mesibo` created (created now if none). */
    static getInstance() {
      return instance ?? new _Mesibo();
    }
    // ---------------------------------------------------------------- setup
    /** Kept for compatibility; Chorus tokens are not bound to an app id. Returns 0. */
    setAppName(name) {
      this.appName = String(name ?? "");
      return 0;
    }
    getAppName() {
      return this.appName;
    }
    /** The user's access token (a Chorus access token). Returns false for an empty token. */
    setAccessToken(token) {
      this.token = String(token ?? "");
      if (this.client) this.client.token = this.token;
      return this.token.length > 0;
    }
    /** Same as `setAccessToken`. */
    setCredentials(token) {
      return this.setAccessToken(token);
    }
    /** Chorus extension: the server base URL (default: the origin the bundle was loaded from, else `location.origin`). */
    setServer(url) {
      this.server = url;
    }
    /** Chorus extension: the server this object talks to (REST, WebSocket, relative `createhttpRequest` URLs). */
    getServer() {
      const s = this.server ?? bundleServer ?? globalThis.location?.origin;
      return s && s !== "null" ? s.replace(/\/+$/, "") : null;
    }
    /** Mesibo's HTTP helper: `setUrl(url)`, `setPostData(obj, json)`, `send(cbdata, cb(cbdata, responseText))`. */
    createhttpRequest() {
      return new MesiboHttpRequest(() => {
        const s = this.getServer();
        if (!s) throw new Error("mesibo (Chorus): no server: call setServer(url) or run in a page");
        return s;
      }, this.options.fetch);
    }
    /** Replaces all listeners by `listener`. */
    setListener(listener) {
      this._listeners.length = 0;
      if (listener) this._listeners.push(listener);
    }
    /** Adds a listener. */
    addListener(listener) {
      if (listener && !this._listeners.includes(listener)) this._listeners.push(listener);
    }
    removeListener(listener) {
      const i = this._listeners.indexOf(listener);
      if (i >= 0) this._listeners.splice(i, 1);
    }
    /**
     * Accepted; nothing is stored in the browser (no IndexedDB): history is read from the server
     * by read sessions. Calls `cb(true)`.
     */
    setDatabase(name, cb) {
      this.dbName = String(name ?? "");
      if (typeof cb === "function") setTimeout(() => cb(true), 0);
      return 0;
    }
    getDatabase() {
      return this.dbName;
    }
    /** No-op (Chorus sessions per tab are independent). */
    enableCrossTabSessions(_on) {
    }
    /** A random 32-bit id (for message ids). */
    random() {
      return Math.floor(Math.random() * 4294967294) + 1 >>> 0;
    }
    /** Connects (and keeps reconnecting) → `Mesibo_onConnectionStatus(status)`. Returns 0 (-1 without token). */
    start() {
      if (this.client) return 0;
      if (!this.token) {
        this.setStatus(C.MESIBO_STATUS_AUTHFAIL);
        return -1;
      }
      const server = this.getServer();
      if (!server) throw new Error("mesibo (Chorus): no server: call setServer(url) or run in a page");
      const opts = { server, token: this.token };
      if (this.options.WebSocket) opts.WebSocket = this.options.WebSocket;
      if (this.options.RTCPeerConnection) opts.RTCPeerConnection = this.options.RTCPeerConnection;
      if (this.options.fetch) opts.fetch = this.options.fetch;
      if (this.options.reconnect !== void 0) opts.reconnect = this.options.reconnect;
      if (this.options.pingInterval !== void 0) opts.pingInterval = this.options.pingInterval;
      const client = new ChorusClient(opts);
      this.client = client;
      client.on("connection", (e) => {
        if (e.state === "online") return;
        if (e.state === "auth_failed" && e.code === CloseCode.SESSION_ENDED) this.setStatus(C.MESIBO_STATUS_SIGNOUT);
        else this.setStatus(CONNECTION_STATUS[e.state]);
      });
      client.on("synced", () => {
        void Promise.all([this.refreshGroups(), this.refreshConversations()]).finally(() => {
          if (this.client === client && client.state === "online") this.setStatus(C.MESIBO_STATUS_ONLINE);
        });
      });
      client.on("message", (m) => this.onMessage(m));
      client.on("receipt", (r) => this.onReceipt(r));
      client.on("presence", (p) => this.onPresence(p));
      client.on("group", (g2) => this.onGroup(g2));
      client.on("error", (e) => this._error("server", e));
      this.p2p.attach(client);
      client.connect().catch(() => void 0);
      return 0;
    }
    /** Disconnects → `Mesibo_onConnectionStatus(MESIBO_STATUS_STOPPED)`. */
    stop() {
      const c = this.client;
      this.client = null;
      for (const gc of this.calls.values()) gc._stopped();
      this.p2p.stopped();
      c?.close();
      this.setStatus(C.MESIBO_STATUS_STOPPED);
      return 0;
    }
    /** The last connection status. */
    getConnectionStatus() {
      return this.status;
    }
    // ---------------------------------------------------------------- identity, profiles
    getAddress() {
      return this.client?.address ?? null;
    }
    /** Your user id (from the session). */
    getUid() {
      return this.client?.user?.uid ?? 0;
    }
    getSelfProfile() {
      const a = this.getAddress();
      if (!a) return null;
      const p = this.getProfile(a);
      if (this.client?.user?.name) p.name = this.client.user.name;
      return p;
    }
    /** `getProfile(address)` for a user, `getProfile(null, gid)` for a group. */
    getProfile(address, groupid) {
      if (groupid && groupid > 0) return this.getGroupProfile(groupid);
      const a = String(address ?? "");
      let p = this.profiles.get(a);
      if (!p) this.profiles.set(a, p = new MesiboProfile(this, a, 0));
      return p;
    }
    /** The profile of group `gid`. */
    getGroupProfile(gid) {
      const g2 = Number(gid);
      let p = this.groups.get(g2);
      if (!p) this.groups.set(g2, p = new MesiboProfile(this, "", g2));
      return p;
    }
    /**
     * The groups you belong to, as loaded at connect (refreshed on group events). Mesibo returns
     * them synchronously from its local database; here `cb(list)` (optional) gets a fresh list from
     * the server.
     */
    getGroupProfiles(cb) {
      if (typeof cb === "function") void this.refreshGroups().then(() => cb(this.groupList()));
      return this.groupList();
    }
    /**
     * Your conversations (users and groups), most recently active first: loaded at connect, moved
     * to the front by every message sent or received. `cb(list)` (optional) gets a fresh list from
     * the server.
     */
    getSortedProfiles(cb) {
      if (typeof cb === "function") void this.refreshConversations().then(() => cb([...this.recent]));
      return [...this.recent];
    }
    /**
     * Creates a group: `createGroup({name, flags, callFlags, videoResolution, callDuration}, listener)`
     * or `createGroup(name, flags, listener)` → `Mesibo_onGroupCreated(profile)` (or `listener(profile)`
     * when it is a function); a failure → `Mesibo_onGroupError(null, error)`.
     */
    createGroup(settings, flagsOrListener, listener) {
      const s = typeof settings === "string" ? { name: settings } : { ...settings ?? {} };
      let l = listener;
      if (typeof flagsOrListener === "number") s.flags = flagsOrListener;
      else if (flagsOrListener !== void 0) l = flagsOrListener;
      void (async () => {
        try {
          const client = await this._client();
          const opts = {
            name: s.name ?? ""
          };
          if (s.flags !== void 0) opts.flags = s.flags;
          if (s.callFlags) opts.call_flags = s.callFlags;
          if (s.videoResolution !== void 0) opts.video_resolution = s.videoResolution;
          if (s.callDuration !== void 0) opts.call_duration = s.callDuration;
          const created = await client.createGroup(opts);
          const p = this.getGroupProfile(created.group.gid);
          p.applyGroup(created.group);
          this._rememberGroup(p);
          if (typeof l === "function") l(p);
          else fire(this._targets(l), "Mesibo_onGroupCreated", p);
        } catch (e) {
          console.warn("mesibo: createGroup failed:", e);
          fire(this._targets(typeof l === "function" ? void 0 : l), "Mesibo_onGroupError", null, groupError(e));
        }
      })();
      return 0;
    }
    // ---------------------------------------------------------------- messages
    /**
     * Mesibo's legacy send: `params` `{peer | groupid, flag, type, expiry}`, `id` a number,
     * `data` the text (a string or bytes) or JSON data (an object). Returns 0; the outcome comes as
     * `Mesibo_onMessageStatus(m)` (SENT, DELIVERED, READ or a failure ≥ 0x80).
     */
    sendMessage(params, id, data) {
      const m = this.legacyMessage(params, id);
      if (typeof data === "string") m.message = data;
      else if (data instanceof Uint8Array || data instanceof ArrayBuffer) m.message = new TextDecoder().decode(data);
      else if (data !== void 0 && data !== null) m.data = data;
      else if (params.message !== void 0) m.message = params.message;
      return m.send();
    }
    /**
     * Mesibo's legacy file send: `sendFile(params, id, file)`, `params` as `sendMessage`'s. `file`
     * is a `File` or `Blob`: uploaded to this server first (tus 1.0, `POST /v1/uploads` with the
     * bytes, up to the server's `max_upload_bytes`), then sent as a stored file that only the
     * conversation's members can read. Or Mesibo's `{filetype, fileurl, size, title, message}`: a
     * file already on some HTTP server, sent by URL. Returns 0; the outcome comes as
     * `Mesibo_onMessageStatus(m)` (a refused upload: `MESIBO_MSGSTATUS_FAIL`).
     */
    sendFile(params, id, file) {
      const m = this.legacyMessage(params, id);
      const blob = typeof Blob !== "undefined" && file instanceof Blob ? file : null;
      const o = file && typeof file === "object" && !blob ? file : {};
      if (typeof o["message"] === "string") m.message = o["message"];
      if (typeof o["title"] === "string") m.title = o["title"];
      if (!blob) {
        const url = o["fileurl"];
        if (typeof url !== "string" || !url) throw new Error("mesibo: sendFile needs a File or Blob, or {fileurl}");
        const ref = { url };
        const stored = /^(?:[a-z]+:\/\/[^/]+)?\/v1\/files\/([0-9a-f]{32})\/content$/.exec(url);
        if (stored && (url.startsWith("/") || url.startsWith(`${this.getServer()}/`))) ref.upload = stored[1];
        if (m.title) ref.name = m.title;
        if (Number(o["size"]) > 0) ref.size = Number(o["size"]);
        if (Number(o["filetype"]) > 0) ref.filetype = Number(o["filetype"]);
        m.file = ref;
        return m.send();
      }
      const name = blob.name || m.title || "file";
      void (async () => {
        try {
          const c = await this._client();
          const upload = await uploadBlob(this.options.fetch ?? fetch.bind(globalThis), c.server, c.rest.token, blob, name);
          m.file = { url: "", upload, name };
          m.send();
        } catch (e) {
          console.warn("mesibo: sendFile: the upload failed:", e);
          m.status = C.MESIBO_MSGSTATUS_FAIL;
          fire(this._listeners, "Mesibo_onMessageStatus", m);
        }
      })();
      return 0;
    }
    /**
     * A signed URL of a file message's file (`m.fileurl` already is one on live messages): works
     * without a token until it expires (the server's `file_url_ttl_secs`). A URL not on this
     * server comes back as it is.
     */
    async getFileUrl(m) {
      const id = m.file?.upload;
      if (!id) return m.fileurl;
      return signedUrl(await this._client(), id);
    }
    /** A new legacy-style message to `params.peer` or `params.groupid`. */
    legacyMessage(params, id) {
      const m = new MesiboMessage(this);
      m.id = id ?? params.id ?? this.random();
      if (params.groupid && params.groupid > 0) {
        m.groupid = Number(params.groupid);
        m.groupProfile = this.getGroupProfile(m.groupid);
      } else {
        m.peer = String(params.peer ?? "");
        m.profile = this.getProfile(m.peer);
      }
      if (params.flag !== void 0) m.flag = params.flag;
      if (params.type !== void 0) m.type = params.type;
      if (params.expiry !== void 0) m.expiry = params.expiry;
      return m;
    }
    /**
     * A read session (legacy): `readDbSession(peer, groupid, query, on_read)`; then `read(n)`, and
     * the messages are in `getMessages()` when `on_read(count)` is called. `query` is ignored.
     */
    readDbSession(peer, groupid, _query, onRead) {
      const conv = groupid > 0 ? { gid: Number(groupid) } : { peer: String(peer ?? "") };
      return new MesiboReadSession(this, conv, null, typeof onRead === "function" ? onRead : null);
    }
    // ---------------------------------------------------------------- calls
    /** The group call of `gid` (`join(listener)` to enter it). */
    groupCall(listener, gid) {
      const g2 = Number(gid);
      let gc = this.calls.get(g2);
      if (!gc || gc._finished) this.calls.set(g2, gc = new MesiboGroupCall(this, listener, g2, false));
      else if (listener) gc._setListener(listener);
      return gc;
    }
    /** Gen-1 group call: `initGroupCall()`, then `setRoom(gid)`; callbacks go to the `setListener` objects. */
    initGroupCall() {
      return new MesiboGroupCall(this, null, 0, true);
    }
    /** 1:1 calls (module `mesibo/p2p`): the media elements of the next video call. */
    setupVideoCall(localVideoId, remoteVideoId, enable) {
      this.p2p.setupVideoCall(localVideoId, remoteVideoId, enable);
    }
    /** The audio element of the next voice call. */
    setupVoiceCall(audioElementId) {
      this.p2p.setupVoiceCall(audioElementId);
    }
    /** Calls `address` → `Mesibo_onCallStatus(callid, status)`. */
    call(address) {
      return this.p2p.call(this._client(), address);
    }
    /** Answers the ringing call. */
    answer(video) {
      return this.p2p.answer(video);
    }
    /** Hangs up the call (`callid` 0: the current one). */
    hangup(callid) {
      return this.p2p.hangup(callid);
    }
    mute(audio, video, enable) {
      this.p2p.mute(audio, video, enable);
    }
    toggleAudioMute() {
      return this.p2p.toggleAudioMute();
    }
    toggleVideoMute() {
      return this.p2p.toggleVideoMute();
    }
    // ---------------------------------------------------------------- internals
    /** @internal The connected client (waits for the connection). */
    async _client() {
      const c = this.client;
      if (!c) throw new ChorusError("state", "Mesibo is not started (call start() first)");
      if (!c.synced) await c.connect();
      return c;
    }
    /** @internal The client, if started. */
    _clientNow() {
      return this.client;
    }
    /** @internal Listener targets: the op's listener if given, else the global listeners. */
    _targets(listener) {
      return listener && typeof listener === "object" ? [listener] : this._listeners;
    }
    /** @internal Reports an error that has no Mesibo callback of its own: `Mesibo_onError({op, code, message})`. */
    _error(op, e) {
      const err = { op, code: e instanceof ChorusError ? e.code : "error", message: e instanceof Error ? e.message : String(e) };
      if (fire(this._listeners, "Mesibo_onError", err) === 0) console.warn(`mesibo: ${op}:`, e);
    }
    /** @internal A stable per-user number for `getId()` (Chorus does not show others' uids). */
    _idFor(address) {
      let id = this.ids.get(address);
      if (id === void 0) this.ids.set(address, id = this.ids.size + 1);
      return id;
    }
    /** @internal */
    _learnName(address, name) {
      if (name) this.getProfile(address).name = name;
    }
    /** @internal */
    _rememberGroup(p) {
      this.memberOf.add(p.groupid);
    }
    /** @internal */
    _forgetGroup(gid) {
      this.memberOf.delete(gid);
    }
    /** @internal */
    _typing(conv, on) {
      const c = this.client;
      if (!c || !c.synced) return;
      c.typing(conv.gid !== void 0 ? { gid: conv.gid, on } : { peer: conv.peer, on });
    }
    /** @internal An edit or deletion of one of your messages; a failure → `Mesibo_onError({op, code, message})`. */
    _retract(op, fn) {
      void this._client().then(fn).catch((e) => this._error(op, e));
    }
    /** @internal `m.delete()`: out of this page's read-session lists. */
    _dropLocal(m) {
      for (const s of this._sessions) s._drop(m);
    }
    /** @internal Sends an outgoing message and reports its status. */
    _send(m) {
      const key = `${this.idPrefix}-${m.id}`;
      m._key = key;
      const report = () => fire(this._listeners, "Mesibo_onMessageStatus", m);
      const c = this.client;
      if (!c) {
        m.status = C.MESIBO_MSGSTATUS_FAIL;
        setTimeout(report, 0);
        return;
      }
      m.ts = Date.now();
      this._touch(m);
      for (const s of this._sessions) s._own(m);
      this.outgoing.set(key, m);
      if (this.outgoing.size > 1e3) this.outgoing.delete(this.outgoing.keys().next().value);
      const out = { id: key };
      if (m.groupid > 0) out.gid = m.groupid;
      else out.peer = m.peer;
      if (m.message) out.text = m.message;
      if (m.data !== void 0) out.data = m.data;
      if (m.file) out.file = m.file;
      if (m.type) out.mtype = m.type;
      if (!out.text && out.data === void 0 && !out.file) out.text = "";
      c.send(out).then(
        (sent) => {
          m.mid = sent.mid;
          m.seq = sent.seq;
          m.ts = sent.ts;
          if (m.status < C.MESIBO_MSGSTATUS_SENT) m.status = C.MESIBO_MSGSTATUS_SENT;
          for (const s of this._sessions) s._sent(m);
          report();
        },
        (e) => {
          this.outgoing.delete(key);
          m.status = failureStatus(e);
          report();
        }
      );
    }
    setStatus(s) {
      if (s === this.status) return;
      this.status = s;
      fire(this._listeners, "Mesibo_onConnectionStatus", s, 0);
    }
    groupList() {
      return [...this.memberOf].map((g2) => this.getGroupProfile(g2));
    }
    async refreshGroups() {
      const c = this.client;
      if (!c) return;
      try {
        const list = await c.groups();
        this.memberOf.clear();
        for (const g2 of list) {
          const p = this.getGroupProfile(g2.gid);
          p.applyGroup(g2);
          this.memberOf.add(g2.gid);
        }
      } catch (e) {
        this._error("getGroupProfiles", e);
      }
    }
    async refreshConversations() {
      const c = this.client;
      if (!c) return;
      try {
        const list = await c.rest.conversations();
        this.recent = (Array.isArray(list) ? list : []).map((x) => {
          if (x.gid !== void 0) {
            const p = this.getGroupProfile(x.gid);
            if (x.name) p.name = x.name;
            return p;
          }
          this._learnName(x.peer ?? "", x.name);
          return this.getProfile(x.peer ?? "");
        });
      } catch (e) {
        this._error("getSortedProfiles", e);
      }
    }
    /** @internal A message in `m`'s conversation: it moves to the front of `getSortedProfiles()`. */
    _touch(m) {
      const p = m.groupid > 0 ? this.getGroupProfile(m.groupid) : this.getProfile(m.peer);
      if (this.recent[0] === p) return;
      this.recent = [p, ...this.recent.filter((x) => x !== p)];
    }
    /**
     * Live messages in order: one carrying a stored file waits for its signed URL (`m.fileurl`),
     * and the messages after it wait for it.
     */
    onMessage(f) {
      if (!this.inbox && !f.file?.upload) return this.deliver(f, null);
      const upload = f.file?.upload;
      const next = (this.inbox ?? Promise.resolve()).then(async () => {
        let url = null;
        if (upload) {
          const c = this.client;
          try {
            if (c) url = await signedUrl(c, upload);
          } catch (e) {
            console.warn("mesibo: no signed URL for a file message:", e);
          }
        }
        this.deliver(f, url);
      });
      this.inbox = next;
      void next.finally(() => {
        if (this.inbox === next) this.inbox = null;
      });
    }
    deliver(f, signedUrl2) {
      const self = this.getAddress();
      if (f.from === self && this.outgoing.has(f.id) && !f.edited && !f.deleted) return;
      const m = fromChorus(this, f, C.MESIBO_ORIGIN_REALTIME, self);
      if (signedUrl2) m.fileurl = signedUrl2;
      if (f.edited || f.deleted) {
        for (const s of this._sessions) s._update(m);
        fire(this._listeners, "Mesibo_onMessageUpdate", m);
        return;
      }
      this._touch(m);
      for (const s of this._sessions) s._live(m);
      fire(this._listeners, "Mesibo_onMessage", m, m.message);
      if (m.isIncoming() && !m.groupid) {
        const p = this.getProfile(m.peer);
        p.typing = false;
      }
    }
    onReceipt(r) {
      for (const m of this.outgoing.values()) {
        if (m.seq === 0 || m.seq > r.seq || m.status >= 128) continue;
        if (r.gid !== void 0 ? m.groupid !== r.gid : m.groupid !== 0 || m.peer !== r.peer) continue;
        let status = r.status;
        if (status === C.MESIBO_MSGSTATUS_READ && !(m.flag & C.MESIBO_FLAG_READRECEIPT)) status = C.MESIBO_MSGSTATUS_DELIVERED;
        if (status === C.MESIBO_MSGSTATUS_DELIVERED && !(m.flag & C.MESIBO_FLAG_DELIVERYRECEIPT)) continue;
        let changed = false;
        if (status === C.MESIBO_MSGSTATUS_READ && m.groupid) {
          m._readBy ?? (m._readBy = /* @__PURE__ */ new Set());
          if (!m._readBy.has(r.by)) {
            m._readBy.add(r.by);
            m.rcount = m._readBy.size;
            changed = true;
          }
        }
        if (status > m.status) {
          m.status = status;
          changed = true;
        }
        if (changed) fire(this._listeners, "Mesibo_onMessageStatus", m);
        if (m.status === C.MESIBO_MSGSTATUS_READ && !m.groupid) this.outgoing.delete(m._key);
      }
    }
    onPresence(f) {
      const p = this.getProfile(f.from);
      p._presence(f);
      const presence = {
        presence: f.presence,
        value: 0,
        peer: f.from,
        from: f.from,
        groupid: f.gid ?? 0,
        profile: p,
        groupProfile: f.gid !== void 0 ? this.getGroupProfile(f.gid) : null,
        getProfile: () => p,
        getPresence: () => f.presence
      };
      fire(this._listeners, "Mesibo_onPresence", presence);
    }
    onGroup(f) {
      const p = this.getGroupProfile(f.gid);
      const members = f.members ?? [];
      const self = this.getAddress();
      switch (f.event) {
        case "members_added":
          if (self && members.includes(self)) this.memberOf.add(f.gid);
          fire(this._listeners, "Mesibo_onGroupMembersJoined", p, members);
          return;
        case "members_removed":
          fire(this._listeners, "Mesibo_onGroupMembersRemoved", p, members);
          if (self && members.includes(self)) {
            this.memberOf.delete(f.gid);
            fire(this._listeners, "Mesibo_onGroupLeft", p);
          }
          return;
        case "updated":
          fire(this._listeners, "Mesibo_onProfileUpdated", p);
          return;
        case "deleted":
          this.memberOf.delete(f.gid);
          fire(this._listeners, "Mesibo_onGroupError", p, C.MESIBO_GROUPERR_DELETED);
          fire(this._listeners, "Mesibo_onGroupLeft", p);
          return;
        default:
          return;
      }
    }
  };

  // src/mesibo/global.ts
  var g = globalThis;
  for (const [k, v] of Object.entries(MESIBO_CONSTANTS)) g[k] = v;
  g.Mesibo = Mesibo;
  var script = globalThis.document?.currentScript;
  _setBundleServer(script?.src);
})();
