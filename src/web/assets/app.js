// rillcast page: plain JS, no framework, no build step. Talks only to /api/v1.
"use strict";
const $ = (s, el = document) => el.querySelector(s);
const h = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k.nodeType ? k : String(k));
  return e;
};
let csrf = null, eventsSince = 0, timer = null, streamsCache = [];

async function api(method, path, body) {
  const opt = { method, headers: {}, credentials: "same-origin" };
  if (csrf) opt.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
  const r = await fetch(path, opt);
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401 && path !== "/api/v1/login") { show("login"); throw new Error("log in"); }
  if (!r.ok) { const e = new Error((data && data.error) || r.statusText); e.field = data && data.field; e.status = r.status; throw e; }
  return data;
}
function toast(msg) { const t = $("#toast"); t.textContent = msg; t.hidden = false; clearTimeout(toast.t); toast.t = setTimeout(() => t.hidden = true, 4000); }
function formErrors(form, e) {
  form.querySelectorAll(".err").forEach(p => p.textContent = "");
  if (!e) return;
  const p = (e.field && (form.querySelector(`.err[data-for="${CSS.escape(e.field)}"]`))) || form.querySelector(".err");
  if (p) p.textContent = (e.field ? e.field + ": " : "") + e.message; else toast(e.message);
}
function show(id) {
  for (const s of ["setup", "login", "status", "configure"]) $("#" + s).hidden = s !== id;
  $("#nav").hidden = !(id === "status" || id === "configure");
  $("#tab-status").className = id === "status" ? "on" : "";
  $("#tab-configure").className = id === "configure" ? "on" : "";
  clearInterval(timer);
  if (id === "status") { refresh(); timer = setInterval(refresh, 2000); }
  if (id === "configure") loadConfig();
}
function route() { show(location.hash === "#configure" ? "configure" : "status"); }

async function start() {
  const s = await api("GET", "/api/v1/session");
  if (s.setup_required) return show("setup");
  if (!s.logged_in) return show("login");
  csrf = s.csrf; route();
}
$("#setup-form").addEventListener("submit", async ev => {
  ev.preventDefault(); const f = ev.target;
  if (f.password.value !== f.password2.value) return formErrors(f, { field: "password", message: "the two passwords differ" });
  try { csrf = (await api("POST", "/api/v1/setup", { password: f.password.value })).csrf; f.reset(); route(); } catch (e) { formErrors(f, e); }
});
$("#login-form").addEventListener("submit", async ev => {
  ev.preventDefault(); const f = ev.target;
  try { csrf = (await api("POST", "/api/v1/login", { password: f.password.value })).csrf; f.reset(); formErrors(f); route(); }
  catch (e) { formErrors(f, { field: "password", message: e.message }); }
});
$("#logout").addEventListener("click", async () => { await api("POST", "/api/v1/logout", {}).catch(() => {}); csrf = null; show("login"); });
window.addEventListener("hashchange", () => { if (csrf) route(); });

const fmtBytes = b => b >= 1048576 ? (b / 1048576).toFixed(1) + " MiB" : (b / 1024).toFixed(0) + " KiB";
const fmtDur = s => s >= 86400 ? Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h" : s >= 3600 ? Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m" : Math.floor(s / 60) + "m " + s % 60 + "s";
function card(k, v, sub) { return h("div", { class: "card" }, h("span", { class: "k" }, k), h("div", { class: "big" }, v), sub ? h("div", { class: "muted" }, sub) : null); }
function kv(k, v) { return h("div", {}, h("span", { class: "k" }, k), v); }
function spark(points) {
  const W = 300, H = 48, max = Math.max(1, ...points), n = points.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "spark"); svg.setAttribute("preserveAspectRatio", "none");
  if (n > 1) {
    const p = document.createElementNS(svg.namespaceURI, "path");
    p.setAttribute("d", points.map((v, i) => (i ? "L" : "M") + (i * W / (n - 1)).toFixed(1) + " " + (H - 2 - v / max * (H - 4)).toFixed(1)).join(""));
    svg.append(p);
  }
  return svg;
}
function copyRow(label, url) {
  return h("div", { class: "url" }, h("span", { class: "k" }, label), h("code", {}, url),
    h("button", { class: "small", onclick: () => navigator.clipboard ? navigator.clipboard.writeText(url).then(() => toast("copied")) : toast(url) }, "Copy"));
}
function pushRow(p, editable) {
  const next = p.next_retry_s != null ? ` — retry in ${p.next_retry_s} s (attempt ${p.attempt})` : "";
  return h("div", { class: "card", "data-push": p.index },
    h("div", {}, h("span", { class: "pill " + p.state }, p.state.replace("_", " ")), " ", h("b", {}, p.stream), " → ", h("span", { class: "mono" }, p.url)),
    p.last_error ? h("div", { class: "err" }, p.last_error + next) : null,
    h("div", { class: "muted" }, `reconnects ${p.reconnects} · sent ${fmtBytes(p.bytes_sent)} · GOPs dropped ${p.gops_dropped}`),
    editable ? h("div", {},
      h("button", { class: "small", onclick: () => editPush(p) }, "Edit"), " ",
      h("button", { class: "small", onclick: () => togglePush(p) }, p.enabled ? "Disable" : "Enable"), " ",
      h("button", { class: "small", onclick: () => removePush(p) }, "Remove")) : null);
}

async function refresh() {
  let s;
  try { s = await api("GET", "/api/v1/status"); } catch (_) { return; }
  streamsCache = s.streams;
  const viewers = s.viewers.length;
  $("#summary").replaceChildren(
    card("Uptime", fmtDur(s.uptime_s), "rillcast " + s.version),
    card("Media memory", fmtBytes(s.memory.planned_bytes), "of " + fmtBytes(s.memory.ceiling_bytes) + " ceiling"),
    card("Viewers", viewers, "RTSP"),
    card("Source restarts", s.streams.reduce((a, x) => a + x.source_restarts, 0), "dropped frames " + s.streams.reduce((a, x) => a + x.dropped_frames, 0)));
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  $("#streams").replaceChildren(...s.streams.map(x => h("div", { class: "card", "data-stream": x.name },
    h("div", {}, h("span", { class: "pill " + (x.live ? "live" : "down") }, x.live ? "live" : "down"), " ", h("b", {}, x.name), h("span", { class: "muted" }, " · " + x.source_kind)),
    player(x).el,
    h("div", { class: "grid" },
      kv("Codec", x.codec || "–"), kv("Resolution", x.width ? `${x.width}×${x.height}` : "–"), kv("Frame rate", x.fps.toFixed(1) + " fps"),
      kv("Bitrate", h("span", { class: "bitrate" }, x.bitrate_kbps + " kbit/s")), kv("Keyframe every", x.keyframe_interval_ms != null ? (x.keyframe_interval_ms / 1000).toFixed(2) + " s" : "–"),
      kv("Viewers", `RTSP ${x.viewers.rtsp} · HLS ${x.viewers.hls} · push ${x.viewers.rtmp_push}`),
      kv("Restarts / drops", `${x.source_restarts} / ${x.dropped_frames}`)),
    spark(x.bitrate_history_kbps.concat([x.bitrate_kbps])),
    h("div", { class: "muted" }, "bitrate, last 5 minutes"),
    copyRow("RTSP", `rtsp://${host}:${s.rtsp_port}${x.rtsp_path}`),
    copyRow("HLS", `${location.protocol}//${host}:${s.http_port}${x.hls_path}`))));
  $("#push").replaceChildren(...(s.push.length ? s.push.map(p => pushRow(p, false)) : [h("p", { class: "muted" }, "No push targets. Add one under Configure.")]));
  $("#viewers").replaceChildren(s.viewers.length ? h("table", {}, h("tr", {}, h("th", {}, "Stream"), h("th", {}, "Protocol"), h("th", {}, "Address"), h("th", {})),
    ...s.viewers.map(v => h("tr", {}, h("td", {}, v.stream), h("td", {}, v.protocol), h("td", { class: "mono" }, v.peer),
      h("td", {}, h("button", { class: "small", onclick: () => api("DELETE", "/api/v1/viewers/" + encodeURIComponent(v.id)).then(refresh, e => toast(e.message)) }, "Disconnect"))))) : h("p", { class: "muted" }, "Nobody is watching."));
  try {
    const ev = await api("GET", "/api/v1/events?since=" + eventsSince);
    eventsSince = ev.next - 1;
    const ul = $("#events");
    for (const e of ev.events) {
      const { seq, unix_ms, type, ...rest } = e;
      ul.prepend(h("li", {}, new Date(unix_ms).toLocaleTimeString() + " " + type.replace(/_/g, " ") + " " + Object.values(rest).join(" ")));
    }
    while (ul.children.length > 30) ul.lastChild.remove();
  } catch (_) { /* next time */ }
}

// ---- live player ----
// fMP4 fragments over a WebSocket into Media Source Extensions (ManagedMediaSource on iOS
// Safari 17.1+), one fragment per frame, so the picture is a few frames behind the camera.
// Keeps the live edge: after a stall it jumps ahead instead of playing seconds late. Without
// MSE, or when the codecs are not supported, it falls back to HLS (native in Safari).
const players = {};
window.rillcastPlayers = players;
const MSE = window.ManagedMediaSource || window.MediaSource;
function player(x) {
  let p = players[x.name];
  if (p) { p.hls = x.hls_path; return p; }
  const video = h("video", { class: "player", muted: true, autoplay: true, playsinline: true, "disable-remote-playback": true });
  video.muted = true; video.disableRemotePlayback = true;
  const info = h("span", { class: "latency muted" }, "connecting…");
  p = players[x.name] = { name: x.name, hls: x.hls_path, video, info, el: h("div", { class: "player-box" }, video, info),
    ws: null, sb: null, queue: [], zero: 0, mode: "", stalls: 0, jumps: 0 };
  if (!MSE) { hlsFallback(p, "no Media Source Extensions"); } else connect(p);
  // The age of each frame as it is shown: its camera time is unix_ms_at_zero + media time.
  if (video.requestVideoFrameCallback) {
    const onFrame = (_, m) => { p.frame_age_s = (Date.now() - (p.zero + m.mediaTime * 1000)) / 1000; video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
  }
  setInterval(() => liveEdge(p), 500);
  return p;
}
function hlsFallback(p, why) {
  p.mode = "hls"; p.info.textContent = "HLS (" + why + ")";
  if (p.ws) { p.ws.onclose = null; p.ws.close(); p.ws = null; }
  p.video.src = p.hls; p.video.play().catch(() => {});
}
function connect(p) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = p.ws = new WebSocket(`${proto}//${location.host}/${encodeURIComponent(p.name)}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = ev => {
    if (typeof ev.data === "string") return open(p, JSON.parse(ev.data));
    p.queue.push(ev.data); feed(p);
  };
  ws.onclose = () => { if (p.ws !== ws) return; p.ws = null; p.info.textContent = "reconnecting…"; setTimeout(() => connect(p), 2000); };
}
function open(p, hello) {
  const mime = `video/mp4; codecs="${hello.codecs}"`;
  if (!MSE.isTypeSupported(mime)) return hlsFallback(p, hello.codecs + " not supported here");
  p.zero = hello.unix_ms_at_zero; p.queue = []; p.sb = null; p.mode = "mse";
  const ms = new MSE();
  ms.addEventListener("sourceopen", () => {
    if (p.ms !== ms) return;
    const sb = ms.addSourceBuffer(mime); sb.mode = "segments";
    sb.addEventListener("updateend", () => feed(p));
    p.sb = sb; feed(p);
  }, { once: true });
  p.ms = ms;
  if (p.video.src) URL.revokeObjectURL(p.video.src);
  p.video.src = URL.createObjectURL(ms);
}
function feed(p) {
  const sb = p.sb;
  if (!sb || sb.updating || !p.queue.length) return;
  // Everything that arrived while the buffer was busy goes in one append.
  const n = p.queue.reduce((a, b) => a + b.byteLength, 0), all = new Uint8Array(n);
  let at = 0; for (const b of p.queue) { all.set(new Uint8Array(b), at); at += b.byteLength; }
  p.queue = [];
  try { sb.appendBuffer(all); } catch (e) {
    // QuotaExceeded or a closed buffer: start over from the next keyframe.
    p.info.textContent = "resyncing (" + e.name + ")"; if (p.ws) p.ws.close();
  }
}
function liveEdge(p) {
  const v = p.video, b = v.buffered;
  if (p.mode !== "mse" || !p.sb || !b.length) return;
  const end = b.end(b.length - 1), behind = end - v.currentTime;
  // Behind by more than a second (a stall, a background tab) or outside the buffer: jump.
  if (behind > 1.0 || v.currentTime < b.start(0)) { v.currentTime = Math.max(b.start(b.length - 1), end - 0.2); p.jumps++; }
  if (v.paused) v.play().catch(() => {});
  // Keep a few seconds behind the playhead, never more.
  if (!p.sb.updating && v.currentTime - b.start(0) > 10) { try { p.sb.remove(0, v.currentTime - 5); } catch (_) { /* next time */ } }
  const lat = p.frame_age_s != null ? p.frame_age_s : (Date.now() - (p.zero + v.currentTime * 1000)) / 1000;
  p.latency_s = lat;
  p.info.textContent = `fMP4 · ${lat.toFixed(2)} s behind the camera · ${v.videoWidth}×${v.videoHeight}`;
}

// ---- configure ----
let cfg = null;
async function loadConfig() {
  cfg = await api("GET", "/api/v1/config");
  const st = await api("GET", "/api/v1/status");
  $("#push-edit").replaceChildren(...st.push.map(p => pushRow(p, true)));
  const sel = $("#push-form").stream;
  sel.replaceChildren(...Object.keys(cfg.streams).map(n => h("option", { value: n }, n)));
  const fields = $("#config-fields"); fields.replaceChildren();
  const walk = (obj, path, parent) => {
    for (const [k, v] of Object.entries(obj)) {
      const p = path ? path + "." + k : k;
      if (p === "push" || p === "http.api_tokens" || p === "http.password_hash") continue;
      if (v && typeof v === "object" && !Array.isArray(v)) {
        const fs = h("fieldset", { class: "card" }, h("legend", {}, p)); parent.append(fs); walk(v, p, fs); continue;
      }
      if (Array.isArray(v) && v.some(x => x && typeof x === "object")) {
        if (p === "webhooks") parent.append(field(p, "lines", v.map(x => x.url).join("\n"), "one URL per line")); continue;
      }
      const type = typeof v === "boolean" ? "bool" : typeof v === "number" ? "number" : Array.isArray(v) ? "list" : "text";
      parent.append(field(p, type, Array.isArray(v) ? v.join(" ") : v, Array.isArray(v) ? "space-separated" : ""));
    }
  };
  walk(cfg, "", fields);
}
function field(path, type, value, hint) {
  const input = type === "bool" ? h("input", { type: "checkbox", "data-path": path, "data-type": type, checked: !!value })
    : type === "lines" ? h("textarea", { "data-path": path, "data-type": type, rows: 2 }, value)
    : h("input", { "data-path": path, "data-type": type, type: type === "number" ? "number" : "text", step: "any", value: value == null ? "" : value });
  return h("div", {}, h("label", { class: type === "bool" ? "row" : "" }, input, " " + path.split(".").pop() + (hint ? ` (${hint})` : "")), h("p", { class: "err", "data-for": path }));
}
$("#config-form").addEventListener("submit", async ev => {
  ev.preventDefault(); const f = ev.target;
  const out = JSON.parse(JSON.stringify(cfg));
  f.querySelectorAll("[data-path]").forEach(i => {
    const path = i.dataset.path.split("."), last = path.pop();
    let o = out; for (const k of path) o = o[k];
    const t = i.dataset.type, raw = i.value.trim();
    o[last] = t === "bool" ? i.checked : t === "number" ? (raw === "" ? NaN : Number(raw)) : t === "list" ? (raw ? raw.split(/\s+/) : [])
      : t === "lines" ? raw.split(/\n+/).filter(Boolean).map(url => ({ url: url.trim() })) : (raw === "" && o[last] == null ? null : raw);
    if (t === "number" && Number.isNaN(o[last])) o[last] = raw;
  });
  try {
    const r = await api("PUT", "/api/v1/config", out);
    formErrors(f); toast(r.changes.length ? r.changes.join("; ") : "no changes"); loadConfig();
  } catch (e) { formErrors(f, e); }
});
function editPush(p) {
  const f = $("#push-form"); const c = cfg.push[p.index];
  f.index.value = p.index; f.url.value = c.url; f.key.value = c.key || ""; f.stream.value = c.stream; f.enabled.checked = c.enabled;
  $("#push-form-title").textContent = "Edit push target " + p.index; f.scrollIntoView();
}
async function togglePush(p) {
  const c = Object.assign({}, cfg.push[p.index], { enabled: !p.enabled });
  try { await api("PUT", "/api/v1/push/" + p.index, c); loadConfig(); } catch (e) { toast(e.message); }
}
async function removePush(p) {
  if (!confirm("Remove push target " + p.index + "?")) return;
  try { await api("DELETE", "/api/v1/push/" + p.index); loadConfig(); } catch (e) { toast(e.message); }
}
$("#push-cancel").addEventListener("click", () => { const f = $("#push-form"); f.reset(); f.index.value = ""; formErrors(f); $("#push-form-title").textContent = "Add a push target"; });
$("#push-form").addEventListener("submit", async ev => {
  ev.preventDefault(); const f = ev.target;
  const body = { url: f.url.value.trim(), stream: f.stream.value, enabled: f.enabled.checked };
  if (f.key.value) body.key = f.key.value;
  try {
    const r = f.index.value === "" ? await api("POST", "/api/v1/push", body) : await api("PUT", "/api/v1/push/" + f.index.value, body);
    formErrors(f); f.reset(); f.index.value = ""; toast(r.result.changes.join("; ") || "saved"); loadConfig();
  } catch (e) { formErrors(f, e); }
});
$("#password-form").addEventListener("submit", async ev => {
  ev.preventDefault(); const f = ev.target;
  try { csrf = (await api("PUT", "/api/v1/password", { current: f.current.value, new: f.new.value })).csrf; f.reset(); formErrors(f); toast("password changed; other sessions logged out"); }
  catch (e) { formErrors(f, e); }
});
$("#token-add").addEventListener("click", async () => {
  try { const r = await api("POST", "/api/v1/tokens"); $("#token-new").textContent = "New token (shown once): " + r.token; } catch (e) { toast(e.message); }
});
start().catch(e => toast(e.message));
