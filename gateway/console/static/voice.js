// Dispatcher voice in the console: hold-to-talk (button and space bar), listening to the
// talkgroups in scope, spoken messages (text or WAV) and recordings. The wire formats are
// docs/protocol.md §12; audio is 16 kHz mono s16le both ways (decoded on the server).
// Usage: import {initVoice} from "/static/voice.js"; initVoice({panel}) — panel defaults to
// #voice-panel. State for tests and other panels: window.xixinVoice; its listen(talkgroup)
// raises one talkgroup above the others.

const RATE = 16000;
const REPLAY_KEPT = 5;     // bursts kept for instant replay
const LEAD_S = 0.08;       // playout lead over the network's jitter
const GAIN = {selected: 1.0, softer: 0.25, muted: 0.0};

const wsUrl = (path) => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

async function getJson(url) {
  const r = await fetch(url, {credentials: "same-origin"});
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

export function initVoice(api = {}) {
  const panel = api.panel || document.getElementById("voice-panel");
  const state = {
    floor: null, floorLog: [], bursts: [], talking: {}, talkgroups: [], listening: false,
    framesSent: 0, levels: {}, focused: null,
  };
  window.xixinVoice = state;
  let ctx = null, micNode = null, talkWs = null, talkTarget = null, pressed = false;
  const streams = {};  // index -> {gain, next, burst}

  // ---- layout ----
  const target = el("select", {id: "voice-target"});
  const talkBtn = el("button", {id: "voice-talk", type: "button"}, "Hold to talk");
  const floorLine = el("span", {id: "voice-floor"}, "idle");
  const dsp = el("input", {id: "voice-dsp", type: "checkbox"});
  const tgList = el("div", {id: "voice-tgs"});
  const nowTalking = el("ul", {id: "voice-now"});
  const replay = el("ul", {id: "voice-replay"});
  const sayText = el("input", {id: "voice-say-text", placeholder: "text to speak"});
  const sayLang = el("select", {id: "voice-say-lang"}, el("option", {value: "cmn"}, "中文"),
                     el("option", {value: "en"}, "English"));
  const sayWav = el("input", {id: "voice-say-wav", type: "file", accept: ".wav,audio/wav"});
  const sayLine = el("span", {id: "voice-say-state"});
  const recFilter = {
    talkgroup: el("input", {placeholder: "talkgroup", size: 10}),
    talker: el("input", {placeholder: "talker", size: 10}),
    since: el("input", {type: "datetime-local"}),
    until: el("input", {type: "datetime-local"}),
  };
  const recList = el("ul", {id: "voice-recordings"});
  const player = el("audio", {id: "voice-player", controls: ""});
  panel.append(
    el("h3", {}, "Talk"), target, " ", talkBtn, " ", floorLine, " ",
    el("label", {title: "for loudspeakers; takes effect at the next start"}, dsp, " echo cancellation"),
    el("h3", {}, "Listen"), tgList, el("div", {}, "Talking now:"), nowTalking,
    el("div", {}, "Instant replay:"), replay,
    el("h3", {}, "Speak a message"), sayText, sayLang, " or ", sayWav,
    el("button", {type: "button", id: "voice-say", onclick: say}, "Send"), " ", sayLine,
    el("h3", {}, "Recordings"), ...Object.values(recFilter),
    el("button", {type: "button", id: "voice-rec-search", onclick: recordings}, "Search"),
    recList, player,
  );

  // ---- audio context (16 kHz both ways) ----
  async function audio() {
    if (!ctx) {
      ctx = new AudioContext({sampleRate: RATE});
      await ctx.audioWorklet.addModule("/static/voice-worklet.js");
    }
    if (ctx.state !== "running") await ctx.resume();
    return ctx;
  }
  document.addEventListener("pointerdown", () => { if (ctx) ctx.resume(); });

  async function microphone() {
    if (micNode) return;
    const c = await audio();
    const media = await navigator.mediaDevices.getUserMedia({
      // Off by default: the browser's echo canceller, noise suppressor and gain control
      // reshape speech (measured: correlation with the source 0.56 with them, 0.92 without);
      // a dispatcher on loudspeakers turns them on.
      audio: {channelCount: 1, echoCancellation: dsp.checked, noiseSuppression: dsp.checked,
              autoGainControl: dsp.checked},
    });
    const source = c.createMediaStreamSource(media);
    micNode = new AudioWorkletNode(c, "xixin-mic");
    micNode.port.onmessage = (e) => {
      if (pressed && talkWs && talkWs.readyState === WebSocket.OPEN) {
        talkWs.send(e.data);
        state.framesSent++;
      }
    };
    source.connect(micNode);
    const sink = c.createGain();  // keep the worklet pulled without playing the microphone
    sink.gain.value = 0;
    micNode.connect(sink).connect(c.destination);
  }

  // ---- talking ----
  function showFloor(msg) {
    state.floor = msg;
    state.floorLog.push(msg);
    let text = msg.state;
    if (msg.state === "queued" && msg.by) text += ` (${msg.by} talking${msg.position ? `, #${msg.position}` : ""})`;
    if (msg.state === "preempted") text += ` by ${msg.by || "a higher priority"}`;
    if (msg.reason && msg.state !== "preempted") text += ` (${msg.reason})`;
    floorLine.textContent = text;
    floorLine.className = msg.state;
    talkBtn.classList.toggle("live", msg.state === "granted");
  }

  function openTalk(wanted) {
    if (talkWs && talkTarget === wanted && talkWs.readyState <= WebSocket.OPEN) return talkWs;
    if (talkWs) talkWs.close();
    talkTarget = wanted;
    talkWs = new WebSocket(wsUrl(`/api/voice/talk?target=${encodeURIComponent(wanted)}`));
    talkWs.binaryType = "arraybuffer";
    talkWs.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "floor") showFloor(msg);
    };
    talkWs.onclose = () => { if (talkTarget === wanted) talkWs = null; };
    return talkWs;
  }

  async function press() {
    if (pressed || !target.value) return;
    pressed = true;
    try { await microphone(); } catch (err) {
      showFloor({type: "floor", state: "denied", by: null, reason: `microphone: ${err.message}`});
      pressed = false;
      return;
    }
    const ws = openTalk(target.value);
    const send = () => { if (pressed) ws.send(JSON.stringify({type: "press"})); };
    if (ws.readyState === WebSocket.OPEN) send(); else ws.addEventListener("open", send, {once: true});
    floorLine.textContent = "requesting";
  }

  function release() {
    if (!pressed) return;
    pressed = false;
    if (talkWs && talkWs.readyState === WebSocket.OPEN) talkWs.send(JSON.stringify({type: "release"}));
  }

  talkBtn.addEventListener("pointerdown", (e) => { e.preventDefault(); press(); });
  talkBtn.addEventListener("pointerup", release);
  talkBtn.addEventListener("pointerleave", release);
  const typing = (e) => ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName);
  document.addEventListener("keydown", (e) => {
    if (e.code === "Space" && !e.repeat && !typing(e)) { e.preventDefault(); press(); }
  });
  document.addEventListener("keyup", (e) => {
    if (e.code === "Space" && !typing(e)) { e.preventDefault(); release(); }
  });
  state.press = press;
  state.release = release;

  async function targets() {
    const tgs = await getJson("/api/talkgroups").catch(() => []);
    const devices = await getJson("/api/devices").catch(() => []);
    target.replaceChildren();
    for (const tg of tgs) {
      const id = tg.id;
      target.append(el("option", {value: id === "all" ? "all" : `tg:${id}`}, id === "all" ? "all-call" : `${tg.name || id} (${id})`));
    }
    for (const d of devices) {
      target.append(el("option", {value: `device:${d.id}`}, `☎ ${d.name || d.id} (${d.id})`));
    }
    if (focused && !pressed && [...target.options].some((o) => o.value === `tg:${focused}`)) target.value = `tg:${focused}`;
  }

  // ---- listening ----
  function buildListen(talkgroups) {
    state.talkgroups = talkgroups;
    tgList.replaceChildren();
    talkgroups.forEach((tg, index) => {
      const choose = el("select", {"data-tg": tg, onchange: (e) => setLevel(index, e.target.value)},
        el("option", {value: "selected"}, "selected"), el("option", {value: "softer"}, "softer"),
        el("option", {value: "muted"}, "muted"));
      choose.value = state.levels[tg] || "selected";
      tgList.append(el("label", {}, `${tg} `, choose), " ");
    });
    if (focused) focus(focused);
  }

  // A talkgroup's level ("selected" | "softer" | "muted"), kept by name across reconnections.
  function setLevel(index, how) {
    const tg = state.talkgroups[index];
    state.levels[tg] = how;
    const choose = tgList.querySelector(`select[data-tg="${CSS.escape(tg)}"]`);
    if (choose) choose.value = how;
    if (streams[index]) streams[index].gain.gain.value = GAIN[how];
  }

  function stream(index) {
    if (!streams[index]) {
      const gain = ctx.createGain();
      gain.gain.value = GAIN[state.levels[streamName(index)] || "selected"];
      gain.connect(ctx.destination);
      streams[index] = {gain, next: 0, burst: null};
    }
    return streams[index];
  }

  // Hear one talkgroup above the others (an SOS opens its talker's audio: alarms.js): it is
  // "selected", every other one "softer", and it becomes the talk target. Asked before the
  // listen stream has said which talkgroups it carries, it applies once it has. Returns whether
  // the talkgroup is one of those heard.
  let focused = null;
  function focus(talkgroup) {
    focused = talkgroup;
    const index = state.talkgroups.indexOf(talkgroup);
    if (index < 0) return false;
    state.talkgroups.forEach((_, i) => setLevel(i, i === index ? "selected" : "softer"));
    state.focused = talkgroup;
    const option = [...target.options].find((o) => o.value === `tg:${talkgroup}`);
    if (option && !pressed) target.value = option.value;
    return true;
  }
  state.listen = focus;

  function streamName(index) {
    return index === 255 ? "call" : state.talkgroups[index];
  }

  function play(index, pcm) {
    const s = stream(index);
    const floats = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) floats[i] = pcm[i] / 32768;
    const buffer = ctx.createBuffer(1, floats.length, RATE);
    buffer.copyToChannel(floats, 0);
    const node = ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(s.gain);
    const now = ctx.currentTime;
    if (s.next < now) s.next = now + LEAD_S;
    node.start(s.next);
    s.next += buffer.duration;
    const burst = state.talking[streamName(index)];
    if (burst) burst.chunks.push(pcm);
  }

  function burstStarted(msg) {
    state.talking[msg.talkgroup] = {...msg, chunks: [], started: Date.now()};
    renderNow();
  }

  function burstEnded(msg) {
    const burst = state.talking[msg.talkgroup];
    delete state.talking[msg.talkgroup];
    renderNow();
    if (!burst || !burst.chunks.length) return;
    const total = burst.chunks.reduce((n, c) => n + c.length, 0);
    const samples = new Int16Array(total);
    let at = 0;
    for (const c of burst.chunks) { samples.set(c, at); at += c.length; }
    state.bursts.push({talkgroup: msg.talkgroup, talker: burst.talker, talker_name: burst.talker_name,
                       burst: burst.burst, samples});
    while (state.bursts.length > REPLAY_KEPT) state.bursts.shift();
    renderReplay();
  }

  function renderNow() {
    nowTalking.replaceChildren(...Object.values(state.talking).map((b) => {
      const where = b.position ? ` @ ${b.position.lat.toFixed(5)}, ${b.position.lon.toFixed(5)}` : "";
      return el("li", {"data-talker": b.talker || ""}, `${b.talkgroup}: ${b.talker_name || b.talker}${where}`);
    }));
  }

  function renderReplay() {
    replay.replaceChildren(...state.bursts.slice().reverse().map((b) => el("li", {},
      el("button", {type: "button", onclick: () => replayBurst(b)}, "▶"),
      ` ${b.talkgroup}: ${b.talker_name || b.talker} (${(b.samples.length / RATE).toFixed(1)} s)`)));
  }

  function replayBurst(b) {
    const floats = new Float32Array(b.samples.length);
    for (let i = 0; i < floats.length; i++) floats[i] = b.samples[i] / 32768;
    const buffer = ctx.createBuffer(1, floats.length, RATE);
    buffer.copyToChannel(floats, 0);
    const node = ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(ctx.destination);
    node.start();
  }

  async function listen() {
    await audio().catch(() => {});
    const ws = new WebSocket(wsUrl("/api/voice/listen"));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        const bytes = new Uint8Array(e.data);
        if (bytes[1] !== 1 || !ctx) return;  // codec 1: PCM s16le 16 kHz
        play(bytes[0], new Int16Array(e.data.slice(2)));
        return;
      }
      const msg = JSON.parse(e.data);
      if (msg.type === "hello") { buildListen(msg.talkgroups); state.listening = true; }
      else if (msg.type === "burst_start") burstStarted(msg);
      else if (msg.type === "burst_end") burstEnded(msg);
    };
    ws.onclose = () => { state.listening = false; setTimeout(listen, 3000); };
  }

  // ---- spoken messages ----
  async function say() {
    const form = new FormData();
    form.append("target", target.value);
    if (sayWav.files.length) form.append("wav", sayWav.files[0]);
    else { form.append("text", sayText.value); form.append("lang", sayLang.value); }
    const r = await fetch("/api/voice/say", {method: "POST", body: form, credentials: "same-origin"});
    const body = await r.json().catch(() => ({}));
    sayLine.textContent = r.ok ? `${body.state} (${body.duration_s} s)` : `refused: ${body.detail}`;
  }

  // ---- recordings ----
  async function recordings() {
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(recFilter)) {
      if (!input.value) continue;
      q.set(k, input.type === "datetime-local" ? String(new Date(input.value).getTime() / 1000) : input.value);
    }
    const rows = await getJson(`/api/recordings?${q}`).catch(() => []);
    recList.replaceChildren(...rows.map((r) => el("li", {"data-recording": r.id},
      el("button", {type: "button", onclick: () => { player.src = `/api/recordings/${r.id}/audio`; player.play(); }}, "▶"),
      " ", el("a", {href: `/api/recordings/${r.id}/audio`, download: ""}, "download"),
      ` ${new Date(r.started_at * 1000).toLocaleString()} ${r.floor_key} ${r.talker} ${(r.duration_ms / 1000).toFixed(1)} s`)));
  }

  targets();
  listen();
  return state;
}
