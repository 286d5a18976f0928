// A real, independent IPFS peer (Helia) for chorus's network interop tests.
// Needs Node >= 22 (tests/helia/setup.sh installs it); driven by tests/helia_peer.py.
//
// Runs until told to stop, or until its stdin closes. Everything is in memory
// and on loopback: libp2p with ONLY a TCP transport listening on 127.0.0.1
// (port 0 unless `--port N`), Noise, Yamux, identify, ping and Bitswap. No
// bootstrap, no DHT, no relay/autonat/upnp/mdns, no delegated routing, no HTTP
// gateways: the peer dials only what it is told to dial.
//
// When ready it prints ONE JSON line on stdout:
//   {"peerId": "12D3Koo...", "multiaddrs": ["/ip4/127.0.0.1/tcp/N/p2p/12D3Koo..."],
//    "versions": {"helia", "libp2p", "bitswap", "unixfs", "node"}}
// then reads JSON commands from stdin, one per line, and answers each with ONE
// JSON line, in order (commands run one at a time):
//
//   {"add": {"size": N, "seed": "s"} | {"text": "..."}, "profile": "kubo-v0" | "v1-raw"}
//       -> {"cid": "<root>", "size": N}
//      imported into helia.blockstore with the very importer setup of import.mjs
//      (Kubo's `ipfs add` defaults, or --cid-version=1 --raw-leaves), so the
//      CIDs are those of tests/vectors/unixfs.json. Content as in import.mjs.
//   {"connect": "<multiaddr with /p2p/>", "timeout_ms": N}
//       -> {"ok": true, "peer": "<remote peer id>", "remoteAddr": "...",
//           "muxer": "/yamux/1.0.0", "encryption": "/noise"}
//   {"cat": "<cid>", "timeout_ms": N} -> {"sha256": "<hex>", "size": N}
//      @helia/unixfs cat: missing blocks come over Bitswap from connected peers.
//   {"peers": true} -> {"peers": ["<peer id>", ...]}   (peers with an open connection)
//   {"has": "<cid>"} -> {"has": bool}                  (local blockstore only)
//   {"ping": "<peer id or multiaddr>", "timeout_ms": N} -> {"rtt_ms": n}
//      /ipfs/ping/1.0.0, over an open connection to that peer (or a new dial)
//   {"peer_info": "<peer id>"}
//       -> {"protocols": [...], "agentVersion": s|null, "protocolVersion": s|null,
//           "addrs": [...], "connections": [{"remoteAddr", "direction", "muxer",
//           "encryption", "status"}]}
//      what identify put in the peer store, and the open connections
//   {"stop": true} -> {"ok": true}, then the process exits 0
//
// A bad or failing command answers {"error": "..."} and the peer carries on.
// Logs go to stderr (DEBUG=libp2p:*,helia:* turns on libp2p's and Helia's own).

import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { importer } from 'ipfs-unixfs-importer'
import { CID } from 'multiformats/cid'
import { content, importerOptions } from './import.mjs'

const DEFAULT_TIMEOUT_MS = 30_000

function log (...args) {
  process.stderr.write(`peer.mjs[${process.pid}]: ${args.join(' ')}\n`)
}

function pkgVersion (name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return JSON.parse(readFileSync(url, 'utf8')).version
}

function parseArgs (argv) {
  let port = 0
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--port' && i + 1 < argv.length) {
      port = Number(argv[++i])
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --port ${argv[i]}`)
    } else {
      throw new Error(`unknown argument ${argv[i]} (only --port N)`)
    }
  }
  return { port }
}

async function createPeer ({ port }) {
  // createHeliaLight: no routers, no block brokers, no HTTP. withLibp2pLight:
  // passes this config to createLibp2p as is (withLibp2p would merge in the
  // defaults: bootstrap, DHT, autonat, relay, upnp, mdns, webrtc, ...).
  const helia = withBitswap(
    withLibp2pLight(
      createHeliaLight({
        blockstore: new MemoryBlockstore(),
        datastore: new MemoryDatastore(),
        routers: []
      }),
      {
        addresses: { listen: [`/ip4/127.0.0.1/tcp/${port}`] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        peerDiscovery: [],
        services: {
          identify: identify(),
          ping: ping()
        }
      }
    )
  )
  await helia.start()
  return helia
}

function timeoutOf (cmd) {
  const ms = cmd.timeout_ms ?? DEFAULT_TIMEOUT_MS
  if (!Number.isInteger(ms) || ms <= 0) throw new Error(`bad timeout_ms ${JSON.stringify(cmd.timeout_ms)}`)
  return ms
}

function parseCid (value) {
  if (typeof value !== 'string') throw new Error(`a CID must be a string, got ${JSON.stringify(value)}`)
  return CID.parse(value)
}

/** A peer id or a multiaddr (a string starting with '/'), as libp2p.dial / ping take them. */
function parseTarget (value) {
  if (typeof value !== 'string' || value === '') throw new Error(`give a peer id or a multiaddr, got ${JSON.stringify(value)}`)
  return value.startsWith('/') ? multiaddr(value) : peerIdFromString(value)
}

function describeConnection (conn) {
  return {
    peer: conn.remotePeer.toString(),
    remoteAddr: conn.remoteAddr.toString(),
    direction: conn.direction,
    muxer: conn.multiplexer ?? null,
    encryption: conn.encryption ?? null,
    status: conn.status
  }
}

async function handle (helia, fs, cmd) {
  if (cmd == null || typeof cmd !== 'object' || Array.isArray(cmd)) throw new Error('a command is a JSON object')
  const libp2p = helia.libp2p

  if (cmd.add != null) {
    const spec = content(cmd.add, 'add')
    const options = importerOptions(cmd.profile ?? 'kubo-v0')
    let root
    for await (const entry of importer([{ content: spec.bytes() }], helia.blockstore, options)) {
      if (root != null) throw new Error('importer yielded more than one entry for a single file')
      root = entry
    }
    if (root == null) throw new Error('importer yielded nothing')
    return { cid: root.cid.toString(), size: spec.size }
  }

  if (cmd.connect != null) {
    if (typeof cmd.connect !== 'string' || !cmd.connect.startsWith('/')) throw new Error('connect takes a multiaddr string')
    const conn = await libp2p.dial(multiaddr(cmd.connect), { signal: AbortSignal.timeout(timeoutOf(cmd)) })
    return { ok: true, ...describeConnection(conn) }
  }

  if (cmd.cat != null) {
    const cid = parseCid(cmd.cat)
    const hash = createHash('sha256')
    let size = 0
    for await (const chunk of fs.cat(cid, { signal: AbortSignal.timeout(timeoutOf(cmd)) })) {
      hash.update(chunk)
      size += chunk.byteLength
    }
    return { sha256: hash.digest('hex'), size }
  }

  if (cmd.peers === true) {
    return { peers: libp2p.getPeers().map(p => p.toString()) }
  }

  if (cmd.has != null) {
    return { has: await helia.blockstore.has(parseCid(cmd.has)) }
  }

  if (cmd.ping != null) {
    const rtt = await libp2p.services.ping.ping(parseTarget(cmd.ping), { signal: AbortSignal.timeout(timeoutOf(cmd)) })
    return { rtt_ms: rtt }
  }

  if (cmd.peer_info != null) {
    const id = peerIdFromString(String(cmd.peer_info))
    let peer = null
    try {
      peer = await libp2p.peerStore.get(id)
    } catch (err) {
      if (err.name !== 'NotFoundError') throw err
    }
    const text = bytes => (bytes == null ? null : new TextDecoder().decode(bytes))
    return {
      protocols: peer?.protocols ?? [],
      agentVersion: text(peer?.metadata.get('AgentVersion')),
      protocolVersion: text(peer?.metadata.get('ProtocolVersion')),
      addrs: (peer?.addresses ?? []).map(a => a.multiaddr.toString()),
      connections: libp2p.getConnections(id).map(describeConnection)
    }
  }

  throw new Error(`unknown command ${JSON.stringify(Object.keys(cmd))}`)
}

function answer (obj) {
  return new Promise(resolve => process.stdout.write(JSON.stringify(obj) + '\n', () => resolve()))
}

async function stopPeer (helia) {
  // bounded: a stop that hangs must not keep the process alive
  await Promise.race([
    helia.stop(),
    new Promise(resolve => setTimeout(resolve, 5_000).unref())
  ])
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const started = Date.now()
  const helia = await createPeer(args)
  const fs = unixfs(helia)
  const libp2p = helia.libp2p
  libp2p.addEventListener('connection:open', evt => log('connection open', JSON.stringify(describeConnection(evt.detail))))
  libp2p.addEventListener('connection:close', evt => log('connection closed', evt.detail.remotePeer.toString()))

  await answer({
    peerId: libp2p.peerId.toString(),
    multiaddrs: libp2p.getMultiaddrs().map(ma => ma.toString()),
    versions: {
      helia: pkgVersion('helia'),
      libp2p: pkgVersion('libp2p'),
      bitswap: pkgVersion('@helia/bitswap'),
      unixfs: pkgVersion('@helia/unixfs'),
      node: process.versions.node
    }
  })
  log(`ready in ${Date.now() - started} ms as ${libp2p.peerId}`)

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') continue
    let cmd
    try {
      cmd = JSON.parse(line)
    } catch (err) {
      await answer({ error: `bad JSON: ${err.message}` })
      continue
    }
    if (cmd?.stop === true) {
      await stopPeer(helia)
      await answer({ ok: true })
      process.exit(0)
    }
    try {
      await answer(await handle(helia, fs, cmd))
    } catch (err) {
      log(`command ${line.slice(0, 200)} failed: ${err.stack ?? err}`)
      const errors = Array.isArray(err.errors) ? ` (${err.errors.map(e => e.message ?? String(e)).join('; ')})` : ''
      await answer({ error: `${err.name ?? 'Error'}: ${err.message}${errors}` })
    }
  }
  // stdin closed: whoever started us is gone
  log('stdin closed, stopping')
  await stopPeer(helia)
  process.exit(0)
}

main().catch(err => {
  log(`fatal: ${err.stack ?? err}`)
  process.exit(1)
})
