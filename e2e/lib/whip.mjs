// WHIP and WHEP clients as a page runs them: plain fetch() and RTCPeerConnection, written from
// RFC 9725 and the WHEP draft (not our SDK). Put the strings in a page's <script>.

/** The WHIP client: ~50 lines of fetch() and RTCPeerConnection, run in the page. */
export const WHIP_CLIENT = `
window.gathered = (pc) => new Promise((r) => {
  if (pc.iceGatheringState === 'complete') return r();
  pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r());
});
window.whipPublish = async (url, key, codec, simulcast) => {
  const pc = new RTCPeerConnection();
  const size = simulcast ? { width: 1280, height: 720 } : { width: 640, height: 360 };
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: size });
  pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
  const sendEncodings = simulcast ? [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] : undefined;
  const video = pc.addTransceiver(media.getVideoTracks()[0], { direction: 'sendonly', sendEncodings });
  const codecs = RTCRtpSender.getCapabilities('video').codecs;
  video.setCodecPreferences([...codecs.filter((c) => c.mimeType === 'video/' + codec), ...codecs.filter((c) => c.mimeType !== 'video/' + codec)]);
  await pc.setLocalDescription(await pc.createOffer());
  await window.gathered(pc); // no trickle: every candidate in the offer, as OBS does
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: 'Bearer ' + key }, body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error('WHIP POST: ' + r.status + ' ' + (await r.text()));
  const session = new URL(r.headers.get('location'), url).href;
  const etag = r.headers.get('etag');
  const answer = await r.text();
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return (window.whip = { pc, session, etag, answer, key });
};
/** ICE restart (RFC 9725 section 4.4.1.2): new local credentials, PATCHed as a fragment. */
window.whipRestart = async () => {
  const w = window.whip;
  w.pc.restartIce();
  await w.pc.setLocalDescription(await w.pc.createOffer());
  await window.gathered(w.pc);
  const sdp = w.pc.localDescription.sdp;
  const line = (name) => sdp.split('\\r\\n').find((l) => l.startsWith('a=' + name + ':'));
  let frag = line('ice-ufrag') + '\\r\\n' + line('ice-pwd') + '\\r\\n';
  for (const m of sdp.split('\\r\\nm=').slice(1)) {
    const ls = m.split('\\r\\n');
    frag += 'm=' + ls[0] + '\\r\\n' + ls.filter((l) => l.startsWith('a=mid:') || l.startsWith('a=candidate:')).join('\\r\\n') + '\\r\\n';
  }
  const r = await fetch(w.session, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '*', authorization: 'Bearer ' + w.key }, body: frag });
  if (r.status !== 200) throw new Error('WHIP PATCH: ' + r.status + ' ' + (await r.text()));
  const answerFrag = await r.text();
  const get = (name) => answerFrag.split('\\r\\n').find((l) => l.startsWith('a=' + name + ':'));
  const answer = w.answer.replace(/a=ice-ufrag:.*\\r\\n/g, get('ice-ufrag') + '\\r\\n').replace(/a=ice-pwd:.*\\r\\n/g, get('ice-pwd') + '\\r\\n');
  await w.pc.setRemoteDescription({ type: 'answer', sdp: answer });
  w.answer = answer;
  w.etag = r.headers.get('etag');
  return { etag: w.etag, ufrag: get('ice-ufrag').slice('a=ice-ufrag:'.length), local: line('ice-ufrag').slice('a=ice-ufrag:'.length) };
};
`;

/** The WHEP player, the draft's counter-offer form: POST an offer, get 406 + the server's
 * offer, PATCH the answer. */
export const WHEP_CLIENT = `
window.whepPlay = async (url, token) => {
  // No token: a group with public viewing on (its session's URL is then its only key).
  const auth = token ? { authorization: 'Bearer ' + token } : {};
  const probe = new RTCPeerConnection();
  probe.addTransceiver('audio', { direction: 'recvonly' });
  probe.addTransceiver('video', { direction: 'recvonly' });
  await probe.setLocalDescription(await probe.createOffer());
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', ...auth }, body: probe.localDescription.sdp });
  probe.close();
  if (r.status !== 406) throw new Error('WHEP POST: ' + r.status + ' ' + (await r.text()));
  const session = new URL(r.headers.get('location'), url).href;
  const pc = new RTCPeerConnection();
  const v = document.createElement('video');
  v.autoplay = v.muted = v.playsInline = true;
  document.body.appendChild(v);
  pc.ontrack = (e) => { if (e.track.kind === 'video') v.srcObject = new MediaStream([e.track]); };
  await pc.setRemoteDescription({ type: 'offer', sdp: await r.text() });
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((res) => (pc.iceGatheringState === 'complete' ? res() : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && res())));
  const p = await fetch(session, { method: 'PATCH', headers: { 'content-type': 'application/sdp', 'if-match': r.headers.get('etag'), ...auth }, body: pc.localDescription.sdp });
  if (p.status !== 204) throw new Error('WHEP PATCH: ' + p.status + ' ' + (await p.text()));
  return (window.whep = { pc, session, token });
};
window.decodedIn = async (pc) => {
  let n = 0;
  (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n = Math.max(n, s.framesDecoded || 0); });
  return n;
};
`;
