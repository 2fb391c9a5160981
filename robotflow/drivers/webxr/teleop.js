// robotflow teleop.webxr page: streams the phone's or headset's pose to the node over a WebSocket.
//
// Every pose goes through sendPose(), whatever makes it: WebXR frames (the phone's viewer pose, or a
// headset controller's grip pose) or, with `?source=test`, a test source that replays
// `window.robotflowTest.pose` at 60 Hz (WebXR does not exist in a headless browser).
"use strict";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const hand = query.get("hand") || "right";

const state = {
  ws: null,
  refused: false,
  offset: 0, // server clock - local clock (ms), from the ping with the lowest round trip
  bestRtt: Infinity,
  synced: false,
  clutchUi: false,
  grip: 1,
  sent: 0,
};

const localNow = () => performance.timeOrigin + performance.now();

function setConn(text, kind) {
  $("conn").textContent = text;
  $("conn").dataset.state = kind;
}

function connect() {
  // The node logs the page's URL with its token when it requires one (always off loopback).
  const token = query.get("token");
  const ws = new WebSocket(`wss://${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : ""));
  state.ws = ws;
  setConn("connecting", "connecting");
  ws.onopen = () => {
    setConn("connected", "connected");
    state.bestRtt = Infinity;
    state.synced = false;
    for (let i = 0; i < 8; i++) setTimeout(ping, i * 25);
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "pong") onPong(m);
    else if (m.type === "refused") {
      state.refused = true;
      setConn(`refused: ${m.reason}`, "refused");
    }
  };
  ws.onclose = () => {
    state.ws = null;
    state.synced = false;
    if (!state.refused) setConn("disconnected", "disconnected");
    setTimeout(connect, 1000);
  };
}

function ping() {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "ping", t0: localNow() }));
  }
}

function onPong(m) {
  const t1 = localNow();
  const rtt = t1 - m.t0;
  if (rtt <= state.bestRtt) {
    state.bestRtt = rtt;
    state.offset = m.ts - (m.t0 + t1) / 2;
  }
  state.synced = true;
  $("latency").textContent = (rtt / 2).toFixed(1);
  $("arm").textContent = m.following ? "following" : "holding";
  $("rec").textContent = m.recording ? "recording" : "idle";
  $("dropped").textContent = m.dropped;
  showControl(m.control);
}

// Who drives the arm, from the arbiter's `control` ("" without one: the page alone drives, nothing to show).
function showControl(source) {
  const el = $("control");
  el.hidden = !source;
  el.dataset.source = source || "";
  el.textContent = source === "policy" ? "policy drives" : source === "human" ? "you drive" : "-";
}

// The one path every pose takes. position: [x, y, z] m; orientation: [x, y, z, w] (WebXR's order);
// controls: {clutch, grip} from a headset controller, or null to use the on-screen ones.
function sendPose(position, orientation, controls) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || !state.synced) return false;
  const clutch = controls && controls.clutch !== undefined ? controls.clutch : state.clutchUi;
  const grip = controls && controls.grip !== undefined ? controls.grip : state.grip;
  ws.send(JSON.stringify({ type: "pose", t: localNow() + state.offset, p: position, q: orientation, clutch, grip }));
  state.sent++;
  if (state.sent % 30 === 0) $("sent").textContent = state.sent;
  return true;
}

function episode(action) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({ type: "episode", action }));
}

// ---- on-screen controls ---------------------------------------------------------------------------------
function setClutch(on) {
  state.clutchUi = on;
  $("clutch").classList.toggle("engaged", on);
  $("clutch").textContent = on ? "moving" : "hold to move";
}
$("clutch").addEventListener("pointerdown", (e) => { e.preventDefault(); setClutch(true); });
for (const ev of ["pointerup", "pointercancel", "pointerleave"]) $("clutch").addEventListener(ev, () => setClutch(false));
$("grip").addEventListener("input", () => {
  state.grip = Number($("grip").value);
  $("gripval").textContent = state.grip > 0.95 ? "open" : state.grip < 0.05 ? "closed" : state.grip.toFixed(2);
});
$("start").addEventListener("click", () => episode("start"));
$("stop").addEventListener("click", () => episode("stop"));
$("fail").addEventListener("click", () => episode("fail"));
$("discard").addEventListener("click", () => episode("discard"));

// ---- WebXR ----------------------------------------------------------------------------------------------
async function startXR() {
  if (!navigator.xr) {
    $("xr").textContent = "WebXR not available (needs HTTPS and a WebXR browser)";
    return;
  }
  const mode = (await navigator.xr.isSessionSupported("immersive-ar")) ? "immersive-ar" : "immersive-vr";
  const session = await navigator.xr.requestSession(mode, {
    optionalFeatures: ["dom-overlay"],
    domOverlay: { root: $("overlay") },
  });
  const gl = $("gl").getContext("webgl", { xrCompatible: true });
  await gl.makeXRCompatible();
  session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
  const space = await session.requestReferenceSpace("local");
  $("source").textContent = mode;
  $("xr").textContent = "Stop XR";
  session.addEventListener("end", () => { $("xr").textContent = "Start XR"; $("source").textContent = "none"; });
  $("xr").onclick = () => session.end();
  const onFrame = (t, frame) => {
    session.requestAnimationFrame(onFrame);
    const layer = session.renderState.baseLayer;
    gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    let transform = null;
    let controls = null;
    for (const src of session.inputSources) {
      // A headset: the controller in the chosen hand; squeeze = clutch, trigger = close the gripper.
      if (src.gripSpace && src.handedness === hand && src.gamepad) {
        const pose = frame.getPose(src.gripSpace, space);
        if (pose) {
          transform = pose.transform;
          const b = src.gamepad.buttons;
          controls = { grip: 1 - (b[0] ? b[0].value : 0), clutch: !!(b[1] && b[1].pressed) };
        }
      }
    }
    if (!transform) {
      const viewer = frame.getViewerPose(space); // a phone: the phone itself is the hand
      if (viewer) transform = viewer.transform;
    }
    if (transform) {
      const p = transform.position;
      const o = transform.orientation;
      sendPose([p.x, p.y, p.z], [o.x, o.y, o.z, o.w], controls);
    }
  };
  session.requestAnimationFrame(onFrame);
}
$("xr").onclick = () => startXR().catch((e) => { $("xr").textContent = `XR failed: ${e.message}`; });

// ---- the test source ------------------------------------------------------------------------------------
if (query.get("source") === "test") {
  window.robotflowTest = { pose: { p: [0, 0, 0], q: [0, 0, 0, 1] }, controls: null, sendPose, state };
  $("source").textContent = "test";
  setInterval(() => {
    const t = window.robotflowTest;
    sendPose(t.pose.p, t.pose.q, t.controls);
  }, 1000 / 60);
}

setInterval(ping, 1000);
connect();
