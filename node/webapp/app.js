// chorus web app: the node owner's console, served by the daemon at / (node/web_ui.py).
//
// One plain ES module, no framework, no build, nothing loaded from anywhere but this
// node: data from the chorus API (/api/chorus/v1, docs/api.md), audio from the
// gateway (/ipfs/CID, Range requests, so the player seeks).
//
// The API token: read once from ?token= in this page's URL (the URL `chorus web`
// prints), kept in sessionStorage, stripped from the address bar, sent as
// `Authorization: Bearer` on writes only. Reads need no token.
//
// Plays: the page reports how much of the track the <audio> element has actually
// played (the total length of its `played` ranges: seeking ahead plays nothing) to
// POST /plays/progress. The node decides when that is a play and signs it with the
// "acting as" key; the page only shows what the node answered.
//
// Everything the ledger says (titles, names) is untrusted text: the DOM is built
// with textContent only, never innerHTML.

const API = "/api/chorus/v1";
const VIEWS = ["listen", "artist", "vote", "node", "audit"];
const REPORT_EVERY_MS = 1000;
const REFRESH_EVERY_MS = 15000;

const state = {
  token: null,
  as: null, // key name the page acts as
  keys: [], // [{name, public_key}]
  node: null,
  coop: null, // the genesis (GET /coop), null in no co-op
  releases: [],
  tally: null,
  wallet: null,
  view: "listen",
  size: null, // the ledger's size when the figures were loaded
  play: null, // the listening session, see startTrack
};

// -- small helpers -----------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  for (const child of children) element.append(child instanceof Node ? child : String(child));
  return element;
}

const uc = (n) => `${Number(n).toLocaleString("en-US")} µc`;
const count = (n) => Number(n).toLocaleString("en-US");
const when = (ms) => new Date(ms).toLocaleString();
const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const short = (hex) => `${hex.slice(0, 8)}…`;

function duration(ms) {
  const seconds = Math.floor(ms / 1000);
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A key as people know it: its keystore name on this node, else short hex. */
function keyLabel(hex) {
  const known = state.keys.find((key) => key.public_key === hex);
  return known ? known.name : short(hex);
}

function keyCell(hex) {
  return h("span", { title: hex, class: "key" }, keyLabel(hex));
}

function actingKey() {
  return state.keys.find((key) => key.name === state.as) ?? null;
}

function randomId() {
  const raw = new Uint8Array(16);
  crypto.getRandomValues(raw);
  return Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A table with a caption; column `rowHeader` of each row is its header cell. */
function table(caption, headings, rows, { numeric = [], rowHeader = 0 } = {}) {
  const align = (i) => (numeric.includes(i) ? "num" : null);
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headings.map((text, i) => h("th", { scope: "col", class: align(i) }, text)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      i === rowHeader
        ? h("th", { scope: "row", class: align(i) }, cell)
        : h("td", { class: align(i) }, cell))))),
  );
}

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

/** Re-render without losing the keyboard focus: the element with the same id gets it back. */
async function keepingFocus(draw) {
  const active = document.activeElement;
  const id = active && active !== document.body ? active.id : "";
  await draw();
  if (id && document.activeElement?.id !== id) document.getElementById(id)?.focus({ preventScroll: true });
}

function empty(text) {
  return h("p", { class: "muted" }, text);
}

// -- status and errors ---------------------------------------------------------------

function announce(text) {
  $("#status").textContent = text;
}

function showError(error) {
  const alert = $("#alert");
  alert.textContent = error.message;
  alert.hidden = false;
}

function clearError() {
  $("#alert").hidden = true;
  $("#alert").textContent = "";
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    if (!state.token) {
      throw new ApiError(401, "unauthorized",
        "This page has no API token, so it can only read. Open the URL `chorus web` prints.");
    }
    headers.Authorization = `Bearer ${state.token}`;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  let value = null;
  try {
    value = await response.json();
  } catch {
    value = null;
  }
  if (!response.ok) {
    const error = value?.error ?? {};
    throw new ApiError(response.status, error.code ?? "error",
      error.message ?? `${method} ${path}: HTTP ${response.status}`);
  }
  return value;
}

// -- token and acting key ------------------------------------------------------------------

function takeUrlParameters() {
  const url = new URL(window.location.href);
  let changed = false;
  for (const [param, storageKey] of [["token", "chorus.token"], ["as", "chorus.as"]]) {
    const value = url.searchParams.get(param);
    if (value !== null) {
      sessionStorage.setItem(storageKey, value);
      url.searchParams.delete(param);
      changed = true;
    }
  }
  if (changed) history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  state.token = sessionStorage.getItem("chorus.token");
  state.as = sessionStorage.getItem("chorus.as");
}

function chooseActingKey() {
  const names = state.keys.map((key) => key.name);
  if (state.as && names.includes(state.as)) return;
  const balances = state.tally?.balances ?? {};
  const members = state.tally?.members ?? {};
  const others = state.keys.filter((key) => key.name !== "self");
  const funded = others.find((key) => (balances[key.public_key] ?? 0) > 0);
  const member = others.find((key) => key.public_key in members);
  state.as = (funded ?? member ?? state.keys[0] ?? { name: null }).name;
}

function renderActing() {
  const select = $("#acting-as");
  select.replaceChildren(...state.keys.map((key) =>
    h("option", { value: key.name, selected: key.name === state.as },
      `${key.name} (${short(key.public_key)})`)));
  const badge = $("#token-state");
  badge.textContent = state.token ? "writes enabled" : "read-only: no API token";
  badge.className = state.token ? "badge ok" : "badge warn";
}

// -- loading ---------------------------------------------------------------------------------

async function loadBasics() {
  const [node, keys, releases, ledger] = await Promise.all(
    [api("/node"), api("/keys"), api("/releases"), api("/ledger")]);
  state.size = ledger.size;
  state.node = node;
  state.keys = keys.keys;
  state.releases = releases.releases;
  if (node.coop) {
    const [coop, tally] = await Promise.all([api("/coop"), api("/tally")]);
    state.coop = coop;
    state.tally = tally;
  } else {
    state.coop = null;
    state.tally = null;
  }
  chooseActingKey();
  await loadWallet();
  $("#coop-name").textContent = state.coop ? `· ${state.coop.name}` : "· in no co-op";
  $("#node-line").textContent = `node ${short(node.peer_id)} · ${node.agent}`;
  renderActing();
}

async function loadWallet() {
  const key = actingKey();
  state.wallet = state.coop && key ? await api(`/wallets/${key.public_key}`) : null;
}

async function refreshView() {
  try {
    await loadBasics();
    await render(state.view);
    clearError();
  } catch (error) {
    showError(error);
  }
}

// -- Listen -------------------------------------------------------------------------------------

/** Price of the acting key's next counted play of `cid`, paid plays so far, owned. */
function quoteFor(cid) {
  const params = state.coop?.params;
  if (!params) return null;
  const played = state.wallet?.tracks.find((track) => track.track === cid);
  if (played) return { price: played.next_price, paid: played.paid, owned: played.owned };
  return { price: params.play_price, paid: 0, owned: false };
}

function priceText(quote) {
  if (!quote) return "—";
  return quote.owned ? "free (owned)" : uc(quote.price);
}

function renderListen() {
  const wallet = state.wallet;
  const key = actingKey();
  $("#wallet-line").replaceChildren(
    !state.coop
      ? "This node is in no co-op: tracks play, but no play is recorded."
      : key && wallet
        ? h("span", {}, "Wallet of ", h("strong", {}, key.name), `: ${uc(wallet.balance)}`,
          wallet.member ? ` · member (${wallet.member})` : " · not a member")
        : "Pick a key to act as.",
  );
  const container = $("#releases");
  if (!state.releases.length) {
    container.replaceChildren(empty("No releases in this node's ledger yet (`chorus release publish`)."));
    return;
  }
  const plays = state.coop?.params.plays_to_own ?? 0;
  container.replaceChildren(...state.releases.map((release) => {
    const heading = `release-${release.id}`;
    const rows = release.tracks.map((track, index) => {
      const quote = quoteFor(track.cid);
      const playing = state.play?.track === track.cid && state.play?.release === release.id;
      const paid = quote ? quote.paid : 0;
      return [
        String(index + 1),
        h("span", {}, track.title),
        duration(track.duration_ms),
        h("span", { "data-price": track.cid }, priceText(quote)),
        quote
          ? h("span", { class: "own" },
            h("progress", { max: plays, value: Math.min(paid, plays), "aria-label": `Plays toward owning ${track.title}` }),
            h("span", { "data-owned": track.cid }, ` ${paid} of ${plays}`))
          : "—",
        h("button", {
          type: "button",
          id: `play-${release.id}-${index}`,
          class: playing ? "play current" : "play",
          "aria-label": `Play ${track.title}`,
          "aria-pressed": playing ? "true" : "false",
          onclick: () => startTrack(release, track),
        }, playing ? "Playing" : "Play"),
      ];
    });
    return h("article", { class: "release", "aria-labelledby": heading },
      h("h3", { id: heading }, release.title),
      h("p", { class: "muted" }, "by ", keyCell(release.artist), ` · ${release.tracks.length} tracks · ${duration(release.duration_ms)} · published ${when(release.time)}`),
      table(`Tracks of ${release.title}`, ["#", "Track", "Length", "Next play", "Toward owning", "Player"], rows,
        { numeric: [0, 2, 3], rowHeader: 1 }));
  }));
}

// -- the player ------------------------------------------------------------------------------
//
// One listening session per track started (and per replay after the end, and per
// change of the acting key): the node records at most one play per session.

/** Media time actually played, ms: the total of the element's `played` ranges. */
function playedMs(audio, play) {
  let seconds = 0;
  for (let i = 0; i < audio.played.length; i += 1) seconds += audio.played.end(i) - audio.played.start(i);
  let ms = Math.round(seconds * 1000);
  // Played to the end with (nearly) every moment covered: the whole track, whatever
  // rounding the decoder's frames and the release's duration disagree by.
  if (audio.ended && Number.isFinite(audio.duration) && seconds >= audio.duration - 0.5) {
    ms = Math.max(ms, play.duration);
  }
  return Math.max(ms - play.base, 0);
}

function session(release, track, previous = null) {
  const params = state.coop?.params;
  return {
    source: [release, track],
    release: release.id,
    track: track.cid,
    title: track.title,
    duration: track.duration_ms,
    threshold: params ? Math.min(params.count_after_ms, track.duration_ms) : track.duration_ms,
    id: randomId(),
    base: 0, // media time played before this session began (after a key change)
    answer: null, // the node's last answer
    previous, // the session before, on the same track: its answer is shown until this one's
    loaded: previous !== null, // the player holds this track (a new one: once src is set)
    recorded: false,
    failed: false,
    sending: false,
    again: false, // progress to report once the report in flight is answered
  };
}

async function startTrack(release, track) {
  const audio = $("#audio");
  const play = session(release, track);
  state.play = play;
  $("#now-playing").textContent = `${track.title} — ${release.title}`;
  renderPlayState();
  keepingFocus(renderListen);
  // The session is opened before the player asks for a byte: the node counts what it
  // fetches from other hosts for this play from then on (bandwidth receipts).
  await report(play, { opening: true });
  if (state.play !== play) return; // another track was started meanwhile
  audio.src = `/ipfs/${track.cid}`;
  play.loaded = true;
  audio.play().catch((error) => {
    if (error.name !== "AbortError") announce(`Press play to start ${track.title} (${error.message}).`);
  });
  announce(`Playing ${track.title}.`);
}

/** The acting key changed: what is played from now on is another session. */
function newSession() {
  const play = state.play;
  if (!play) return;
  const next = session(...play.source, play);
  next.base = playedMs($("#audio"), { ...next, base: 0 });
  state.play = next;
  renderPlayState();
}

function renderPlayState() {
  const play = state.play;
  const bar = $("#play-progress");
  const line = $("#play-line");
  if (!play) {
    bar.value = 0;
    line.textContent = "";
    return;
  }
  const answer = play.answer ?? play.previous?.answer ?? null;
  const current = play.answer !== null;
  const credited = current ? answer.played_ms : 0;
  bar.max = Math.max(play.threshold, 1);
  bar.value = Math.min(credited, play.threshold);
  const parts = [];
  if (!state.coop) parts.push("This node is in no co-op: plays are not recorded.");
  else if (!state.token) parts.push("Read-only (no API token): this play will not be recorded.");
  else if (current && answer.recorded) parts.push(`Play recorded (${answer.outcome ?? "counted"}).`);
  else {
    if (!current && answer?.recorded) parts.push(`Last play recorded (${answer.outcome ?? "counted"}).`);
    parts.push(`Played ${duration(credited)} of ${duration(play.threshold)} needed for the play to count.`);
  }
  if (answer) {
    parts.push(answer.owned
      ? `You own this track: plays are free (${answer.n} of ${answer.plays_to_own}).`
      : `Next play: ${uc(answer.price)} · ${answer.n} of ${answer.plays_to_own} paid plays toward owning it · wallet ${uc(answer.balance)}.`);
  }
  line.textContent = parts.join(" ");
}

async function report(play = state.play, { opening = false } = {}) {
  const audio = $("#audio");
  if (!play || play.recorded || play.failed) return;
  if (!state.coop || !state.token || !state.as) return;
  if (!play.loaded && !opening) return; // the player still holds the track before
  if (play.sending) {
    play.again = true;
    return;
  }
  const played = opening ? 0 : play === state.play ? playedMs(audio, play) : play.final;
  if (played === undefined) return;
  if (!opening) {
    if (play.answer && played <= play.answer.played_ms) return; // nothing new to credit
    if (!play.answer && played === 0 && audio.paused) return;
  }
  play.sending = true;
  play.again = false;
  try {
    const answer = await api("/plays/progress", {
      method: "POST",
      body: { as: state.as, release: play.release, track: play.track, played_ms: played, session: play.id },
    });
    play.answer = answer;
    if (answer.recorded && !play.recorded) {
      play.recorded = true;
      await loadBasics();
      if (state.view === "listen") await keepingFocus(renderListen);
      const next = answer.owned ? "you own it now: plays are free" : `next play ${uc(answer.price)}`;
      announce(`Play of ${play.title} recorded (${answer.outcome}): ${next}, ${answer.n} of ${answer.plays_to_own} toward owning it.`);
    }
    renderPlayState();
  } catch (error) {
    if (error.status >= 400 && error.status < 500) play.failed = true; // would be refused again
    showError(error);
  } finally {
    play.sending = false;
  }
  if (play.again) report(play);
}

function wirePlayer() {
  const audio = $("#audio");
  for (const event of ["playing", "pause", "seeked"]) audio.addEventListener(event, () => report());
  audio.addEventListener("ended", () => {
    const play = state.play;
    if (!play) return;
    // The last progress of this listening, then the track is loaded again: played
    // again, it is another listening, so another session (and its `played` ranges
    // start empty only with the source loaded anew).
    play.final = playedMs(audio, play);
    report(play);
    state.play = session(...play.source, play);
    audio.load();
    renderPlayState();
  });
  audio.addEventListener("error", () => {
    if (state.play) announce(`The player could not load ${state.play.title}.`);
  });
  // While a session is unrecorded, report every second (the node credits progress
  // no faster than real time, so a report may have to be repeated to count).
  setInterval(() => report(), REPORT_EVERY_MS);
}

// -- Artist -----------------------------------------------------------------------------------

function splitShares(total, payees) {
  // The release's earnings split by basis points, the remainder to the largest share
  // (the tally's rule per play; summed over plays it can differ by a few µc).
  const shares = payees.map((payee) => Math.floor((total * payee.bps) / 10000));
  let top = 0;
  payees.forEach((payee, i) => {
    if (payee.bps > payees[top].bps) top = i;
  });
  if (payees.length) shares[top] += total - shares.reduce((a, b) => a + b, 0);
  return shares;
}

function renderArtist() {
  const container = $("#artist");
  if (!state.tally) {
    container.replaceChildren(empty("This node is in no co-op: there are no earnings to show."));
    return;
  }
  const figures = state.tally.releases;
  const me = actingKey()?.public_key;
  const releaseRows = state.releases.map((release) => {
    const got = figures[release.id] ?? { earnings: 0, paid_plays: 0 };
    return [release.title, keyCell(release.artist), count(got.paid_plays), uc(got.earnings)];
  });
  const parts = [
    table("Earnings per release", ["Release", "Artist", "Paid plays", "Payees' part"], releaseRows, { numeric: [2, 3] }),
  ];
  for (const release of state.releases) {
    const got = figures[release.id] ?? { earnings: 0 };
    const shares = splitShares(got.earnings, release.payees);
    parts.push(table(`Payees of ${release.title}`, ["Payee", "Split", "Share of its earnings"],
      release.payees.map((payee, i) => [
        h("span", {}, keyCell(payee.key), payee.key === me ? " (you)" : ""),
        `${(payee.bps / 100).toFixed(2)} %`,
        `≈ ${uc(shares[i])}`,
      ]), { numeric: [1, 2] }));
  }
  const earners = Object.entries(state.tally.earnings);
  parts.push(earners.length
    ? table("Earnings per payee (all releases)", ["Payee", "Earned"],
      earners.map(([key, amount]) => [keyCell(key), uc(amount)]), { numeric: [1] })
    : empty("No payee has earned anything yet."));
  container.replaceChildren(...parts);
}

// -- Vote ---------------------------------------------------------------------------------------

function voteState(proposal, now) {
  if (now < proposal.opens) return `opens ${when(proposal.opens)}`;
  if (now >= proposal.closes) return `closed ${when(proposal.closes)}`;
  return `open until ${when(proposal.closes)}`;
}

async function cast(proposal, form) {
  const chosen = form.querySelector("input[type=radio]:checked");
  if (!chosen) {
    announce("Choose an option first.");
    return;
  }
  const option = Number(chosen.value);
  try {
    const written = await api("/ballots", { method: "POST", body: { as: state.as, proposal: proposal.id, option } });
    announce(`${state.as} voted ${JSON.stringify(proposal.options[option])} on ${proposal.title}${written.counted ? "" : " (not counted: see the audit view)"}.`);
    clearError();
    await loadBasics();
    await keepingFocus(renderVote);
  } catch (error) {
    showError(error);
  }
}

async function renderVote() {
  const container = $("#proposals");
  if (!state.coop) {
    container.replaceChildren(empty("This node is in no co-op: there is nothing to vote on."));
    return;
  }
  const { proposals } = await api("/proposals");
  if (!proposals.length) {
    container.replaceChildren(empty("No proposals yet (`chorus vote propose`)."));
    return;
  }
  const now = Date.now();
  const me = actingKey()?.public_key;
  container.replaceChildren(...proposals.map((proposal) => {
    const heading = `proposal-${proposal.id}`;
    const mine = me !== undefined ? proposal.ballots[me] : undefined;
    const open = now >= proposal.opens && now < proposal.closes;
    const form = h("form", { class: "ballot", "aria-labelledby": heading });
    form.append(h("fieldset", {},
      h("legend", {}, `Your ballot as ${state.as ?? "—"}`),
      proposal.options.map((option, i) => h("label", { class: "option" },
        h("input", { type: "radio", id: `option-${proposal.id}-${i}`, name: `option-${proposal.id}`, value: i, checked: mine === i }), ` ${option}`)),
      h("button", { type: "submit", id: `cast-${proposal.id}`, disabled: !open || !state.token }, "Cast ballot")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      cast(proposal, form);
    });
    const classes = proposal.classes;
    const results = table(`Results of ${proposal.title}`, ["Option", "Votes", ...classes],
      proposal.options.map((option, i) => [
        proposal.winner === i ? `${option} (winner)` : option,
        count(proposal.totals[i]),
        ...classes.map((name) => count(proposal.by_class[name]?.[i] ?? 0)),
      ]), { numeric: [1, ...classes.map((_, i) => i + 2)] });
    return h("article", { class: "proposal", "aria-labelledby": heading },
      h("h3", { id: heading }, proposal.title),
      h("p", { class: "muted" }, `${voteState(proposal, now)} · proposed by `, keyCell(proposal.author),
        ` · classes: ${classes.join(", ")}`),
      form,
      results,
      fields([
        ["Eligible", `${proposal.eligible} (${Object.entries(proposal.eligible_by_class).map(([k, v]) => `${k} ${v}`).join(", ")})`],
        ["Counted", String(proposal.counted)],
        ["Quorum", proposal.quorum_met ? "met" : "not met"],
        ["Your ballot", mine === undefined ? "none counted" : proposal.options[mine]],
      ]));
  }));
}

// -- Node -------------------------------------------------------------------------------------

async function renderNode() {
  const container = $("#node");
  const [peers, pins, store] = await Promise.all([api("/peers"), api("/pins"), api("/store")]);
  const node = state.node;
  const parts = [
    fields([
      ["Peer ID", h("code", {}, node.peer_id)],
      ["Version", node.agent],
      ["Co-op", node.coop ? h("code", {}, node.coop.genesis) : "none"],
      ["Addresses", node.addresses.length ? h("ul", { class: "plain" }, node.addresses.map((a) => h("li", {}, h("code", {}, a)))) : "none"],
      ["Store", `${count(store.blocks)} blocks, ${bytes(store.bytes)}${store.quota === null ? "" : ` of ${bytes(store.quota)} (${bytes(store.free)} free)`}`],
    ]),
  ];
  parts.push(peers.peers.length
    ? table("Peers", ["Peer", "Connected", "Protocol", "Sent", "Received", "Penalty"],
      peers.peers.map((peer) => [
        h("code", { title: peer.peer_id }, short(peer.peer_id)),
        peer.connected ? "yes" : "no",
        peer.protocol ?? "—",
        bytes(peer.exchange.bytes_sent),
        bytes(peer.exchange.bytes_received),
        peer.penalty ? `${peer.penalty.strikes} (${peer.penalty.reason})${peer.penalty.banned ? ", banned" : ""}` : "none",
      ]), { numeric: [3, 4] })
    : empty("No peers: this node exchanged no blocks with anyone since it started."));
  const sent = peers.peers.reduce((sum, peer) => sum + peer.exchange.bytes_sent, 0);
  const received = peers.peers.reduce((sum, peer) => sum + peer.exchange.bytes_received, 0);
  parts.push(h("p", {}, `Served ${bytes(sent)} to peers and received ${bytes(received)} since the daemon started (verified blocks).`));
  parts.push(pins.pins.length
    ? table("Pinned content", ["CID", "Pin"], pins.pins.map((pin) => [h("code", {}, pin.cid), pin.type]))
    : empty("Nothing pinned."));
  if (state.tally) {
    const epochMs = state.coop.params.epoch_ms;
    const rows = Object.entries(state.tally.epochs)
      .filter(([, figures]) => node.peer_id in figures.host_pay || node.peer_id in figures.host_bytes)
      .map(([epoch, figures]) => [
        `${epoch} (from ${day(Number(epoch) * epochMs)})`,
        bytes(figures.host_bytes[node.peer_id] ?? 0),
        uc(figures.host_pay[node.peer_id] ?? 0),
      ]);
    parts.push(rows.length
      ? table("Hosting pay of this node per epoch", ["Epoch", "Bytes acknowledged", "Pay"], rows, { numeric: [1, 2] })
      : empty("No hosting pay yet: no listener has acknowledged bytes this node served."));
  }
  container.replaceChildren(...parts);
}

// -- Audit --------------------------------------------------------------------------------------

function chart(epochs, epochMs) {
  const series = [
    ["plays", "Paid for plays", (f) => f.paid_plays],
    ["payees", "To payees", (f) => f.payees],
    ["hosts", "To hosts", (f) => Object.values(f.host_pay).reduce((a, b) => a + b, 0)],
    ["coop", "Kept by the co-op", (f) => f.coop_retained],
  ];
  const entries = Object.entries(epochs).sort((a, b) => Number(a[0]) - Number(b[0]));
  const width = 640;
  const height = 260;
  const left = 70;
  const bottom = 40;
  const top = 16;
  const plotHeight = height - bottom - top;
  const highest = Math.max(1, ...entries.flatMap(([, f]) => series.map(([, , get]) => get(f))));
  const groupWidth = (width - left - 10) / Math.max(entries.length, 1);
  const barWidth = Math.max(4, Math.min(28, (groupWidth - 12) / series.length));
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title chart-desc", class: "chart",
  });
  svg.append(s("title", { id: "chart-title" }, "Plays and payouts per epoch"));
  svg.append(s("desc", { id: "chart-desc" },
    `µc paid for plays, paid to payees, paid to hosts and kept by the co-op, for ${entries.length} epochs; highest ${uc(highest)}. The same figures are in the table below.`));
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotHeight * (1 - fraction);
    svg.append(s("line", { x1: left, x2: width - 10, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, count(Math.round(highest * fraction))));
  }
  entries.forEach(([epoch, figures], g) => {
    const x0 = left + g * groupWidth + 6;
    series.forEach(([name, label, get], i) => {
      const value = get(figures);
      const barHeight = (value / highest) * plotHeight;
      const bar = s("rect", {
        x: x0 + i * barWidth, y: top + plotHeight - barHeight, width: barWidth - 2, height: Math.max(barHeight, 0), class: `bar bar-${name}`,
      });
      bar.append(s("title", {}, `epoch ${epoch}: ${label} ${uc(value)}`));
      svg.append(bar);
    });
    svg.append(s("text", { x: x0 + (series.length * barWidth) / 2, y: height - bottom + 16, class: "axis", "text-anchor": "middle" },
      `${epoch}`));
    svg.append(s("text", { x: x0 + (series.length * barWidth) / 2, y: height - bottom + 30, class: "axis small", "text-anchor": "middle" },
      day(Number(epoch) * epochMs)));
  });
  const legend = h("ul", { class: "legend" }, series.map(([name, label]) =>
    h("li", {}, h("span", { class: `swatch bar-${name}`, "aria-hidden": "true" }), label)));
  const data = table("Plays and payouts per epoch (µc)", ["Epoch", ...series.map(([, label]) => label)],
    entries.map(([epoch, f]) => [`${epoch} (${day(Number(epoch) * epochMs)})`, ...series.map(([, , get]) => count(get(f)))]),
    { numeric: [1, 2, 3, 4] });
  return h("figure", { class: "chart-figure" }, svg, legend, h("figcaption", {}, "µc per epoch, from the tally of this node's ledger."), data);
}

async function renderAudit() {
  const container = $("#audit");
  const ledger = await api("/ledger");
  const head = ledger.tree_head;
  const parts = [
    h("h3", {}, "Latest signed tree head"),
    head
      ? fields([
        ["Size", count(head.size)],
        ["Root", h("code", {}, head.root)],
        ["Signed", when(head.time)],
        ["Entry", h("code", {}, head.id)],
        ["Signer", h("code", {}, ledger.owner)],
      ])
      : empty("This node signed no tree head yet."),
    h("h3", {}, "Log"),
    fields([
      ["Entries", count(ledger.size)],
      ["Feeds", count(ledger.feeds)],
      ["Root", h("code", {}, ledger.root)],
      ["Not yet under a tree head", count(head ? ledger.size - head.size : ledger.size)],
    ]),
  ];
  if (state.tally) {
    const tally = state.tally;
    parts.push(h("h3", {}, "Tallies"));
    parts.push(table("Totals (money in µc; plays are counts)", ["Figure", "Value"],
      Object.entries(tally.totals).map(([name, value]) => [name.replaceAll("_", " "), count(value)]), { numeric: [1] }));
    parts.push(Object.keys(tally.epochs).length ? chart(tally.epochs, state.coop.params.epoch_ms) : empty("No money has moved yet: no epoch to chart."));
    parts.push(tally.anomalies.length
      ? table("Entries in the ledger that are not counted", ["Code", "Entry", "Why"],
        tally.anomalies.map((a) => [a.code, a.entry ? h("code", {}, short(a.entry)) : "—", a.message]))
      : empty("No anomalies: every entry counts."));
  }
  container.replaceChildren(...parts);
}

async function verify() {
  const button = $("#verify");
  const out = $("#verify-result");
  button.disabled = true;
  out.replaceChildren(h("p", {}, "Verifying every entry, feed and tree head…"));
  try {
    const report = await api("/ledger/verify", { method: "POST" });
    const verdict = report.ok ? (report.clean ? "verified: no errors, no anomalies" : "verified: no errors (anomalies below)") : "FAILED";
    out.replaceChildren(
      h("p", { class: report.ok ? "verdict ok" : "verdict bad" }, `Ledger ${verdict}.`),
      fields([
        ["Entries", count(report.entries)],
        ["Feeds", count(report.feeds)],
        ["Tree heads checked", count(report.tree_heads.length)],
        ["Errors", count(report.errors)],
        ["Anomalies", count(report.anomalies)],
        ["Forks", count(report.forks.length)],
      ]),
      report.findings.length
        ? table("Findings", ["Rule", "Severity", "Entry", "Message"],
          report.findings.map((f) => [f.rule, f.severity, f.entry ? short(f.entry) : "—", f.message]))
        : empty("No findings."),
    );
    announce(`Ledger ${verdict}.`);
  } catch (error) {
    out.replaceChildren();
    showError(error);
  } finally {
    button.disabled = !state.token;
  }
}

// -- views and tabs -------------------------------------------------------------------------

const RENDER = { listen: renderListen, artist: renderArtist, vote: renderVote, node: renderNode, audit: renderAudit };

async function render(view) {
  await keepingFocus(RENDER[view]);
  $("#verify").disabled = !state.token;
}

function selectView(view, { focus = false } = {}) {
  if (!VIEWS.includes(view)) view = "listen";
  state.view = view;
  for (const name of VIEWS) {
    const tab = $(`#tab-${name}`);
    const selected = name === view;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`#panel-${name}`).hidden = !selected;
  }
  if (focus) $(`#tab-${view}`).focus();
  if (window.location.hash !== `#${view}`) history.replaceState(history.state, "", `#${view}`);
  refreshView(); // each view shows the figures as they are now
}

function wireTabs() {
  for (const name of VIEWS) {
    $(`#tab-${name}`).addEventListener("click", () => selectView(name));
  }
  $("#tabs").addEventListener("keydown", (event) => {
    const at = VIEWS.indexOf(state.view);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: VIEWS.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectView(VIEWS[(moves[event.key] + VIEWS.length) % VIEWS.length], { focus: true });
  });
  window.addEventListener("hashchange", () => selectView(window.location.hash.slice(1)));
}

function wireControls() {
  $("#acting-as").addEventListener("change", async (event) => {
    state.as = event.target.value;
    sessionStorage.setItem("chorus.as", state.as);
    newSession(); // a play is signed by one key: a new key is a new session
    try {
      await loadWallet();
      await render(state.view);
      announce(`Acting as ${state.as}.`);
    } catch (error) {
      showError(error);
    }
  });
  $("#verify").addEventListener("click", verify);
  $("#refresh").addEventListener("click", async () => {
    await refreshView();
    announce("Refreshed.");
  });
}

async function main() {
  takeUrlParameters();
  wireTabs();
  wireControls();
  wirePlayer();
  selectView(window.location.hash.slice(1) || "listen");
  // Follow the ledger: when it grew (gossip, another client), show the new figures;
  // not on the Vote view, where a redraw would drop a ballot being chosen.
  setInterval(async () => {
    if (document.visibilityState !== "visible" || state.view === "vote") return;
    try {
      const { size } = await api("/ledger");
      if (size !== state.size) await refreshView();
    } catch (error) {
      showError(error);
    }
  }, REFRESH_EVERY_MS);
}

main();
