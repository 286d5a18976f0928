// Reference UnixFS importer for chorus's interop vectors.
//
// Reads ONE JSON job from stdin, imports it with ipfs-unixfs-importer (the
// importer Helia uses, configured like Kubo's `ipfs add`) and writes ONE JSON
// result to stdout. Needs Node >= 22 (tests/helia/setup.sh installs it).
//
// Job:
//   {"profile": "kubo-v0" | "v1-raw",
//    "file": {"size": N, "seed": "s"} | {"text": "..."}}
//   -> {"cid": "<root cid>", "size": N, "blocks": <distinct blocks written>}
//
//   {"profile": ..., "entries": [{"path": "album/a.bin", "size": N, "seed": "s"},
//                                {"path": "album/b.txt", "text": "..."},
//                                {"path": "album/empty", "dir": true}, ...]}
//   -> {"root": "<cid of the top-level directory>", "root_path": "album",
//       "paths": {"album": "...", "album/a.bin": "...", ...}, "blocks": n}
//   imported like `ipfs add -r album`: no wrapping directory, and `paths` holds
//   what the `added <cid> <path>` lines say, for files and directories alike.
//
// {"size", "seed"} content is deterministic_bytes(size, seed) from
// tests/vectors/content.py: sha256(`${seed}:${k}`) for k = 0, 1, 2, ...
// concatenated and truncated to size bytes. It is generated here, in pieces,
// so big files never cross the pipe nor sit whole in memory.
//
// Two helper jobs: {"version": true} -> {"importer": "17.x.y", "node": "22.x.y"}
// and {"sha256": {"size": N, "seed": "s"}} -> {"sha256": "<hex of the content>"}.
//
// CIDs print as Kubo prints them: CIDv0 in base58btc, CIDv1 in base32.
//
// The importer setup, the content generator and the two import jobs are
// exported for tests/helia/car.mjs; main() runs only when this file is the
// script node was started with.

import { createHash } from 'node:crypto'
import { readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { importer } from 'ipfs-unixfs-importer'

const CHUNK_SIZE = 262144
const MAX_CHILDREN = 174
const PIECE = 1 << 20

// Kubo's `ipfs add` defaults, and `ipfs add --cid-version=1 --raw-leaves`.
// Both: fixed 256 KiB chunks, balanced DAG of at most 174 links per node,
// single-block files are the leaf itself, directories (and internal file
// nodes) are dag-pb. HAMT sharding only kicks in past 256 KiB of links, like
// Kubo's default (never reached by the vectors).
const PROFILES = {
  'kubo-v0': { cidVersion: 0, rawLeaves: false, leafType: 'file' },
  'v1-raw': { cidVersion: 1, rawLeaves: true, leafType: 'file' }
}

export function importerOptions (profile) {
  const p = PROFILES[profile]
  if (p == null) {
    throw new Error(`unknown profile ${JSON.stringify(profile)} (want one of ${Object.keys(PROFILES).join(', ')})`)
  }
  return {
    ...p,
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
    chunker: fixedSize({ chunkSize: CHUNK_SIZE }),
    layout: balanced({ maxChildrenPerNode: MAX_CHILDREN }),
    shardSplitThresholdBytes: 262144,
    shardSplitStrategy: 'links-bytes',
    fieldOrder: 'links-first',
    // one file at a time keeps memory flat; order does not change any CID
    fileImportConcurrency: 1
  }
}

/** deterministic_bytes(size, seed), yielded in pieces of at most `piece` bytes. */
export function * deterministicChunks (size, seed, piece = PIECE) {
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad size ${size}`)
  if (typeof seed !== 'string') throw new Error('seed must be a string')
  if (piece <= 0 || piece % 32 !== 0) throw new Error('piece must be a positive multiple of 32')
  let k = 0
  let left = size
  while (left > 0) {
    const n = Math.min(piece, left)
    const buf = new Uint8Array(Math.ceil(n / 32) * 32)
    for (let off = 0; off < buf.length; off += 32) {
      buf.set(createHash('sha256').update(`${seed}:${k}`, 'utf8').digest(), off)
      k++
    }
    left -= n
    yield buf.subarray(0, n)
  }
}

export function content (spec, where) {
  if (typeof spec.text === 'string') {
    if (spec.size != null || spec.seed != null) throw new Error(`${where}: give either text or size+seed`)
    return { bytes: () => [new TextEncoder().encode(spec.text)], size: Buffer.byteLength(spec.text, 'utf8') }
  }
  if (spec.size == null || spec.seed == null) throw new Error(`${where}: needs text, or size and seed`)
  return { bytes: () => deterministicChunks(spec.size, spec.seed), size: spec.size }
}

/**
 * A write-only blockstore that keeps the set of CIDs written and, when asked,
 * the bytes of directory blocks (small), so the tree can be walked afterwards,
 * or of every block (`keepBlocks`, for car.mjs: then `get(cid)` reads them back).
 */
export function countingBlockstore ({ keepDirectories = false, keepBlocks = false } = {}) {
  const seen = new Set()
  const directories = new Map()
  const blocks = new Map()
  return {
    seen,
    directories,
    blocks,
    async put (cid, bytes) {
      const key = cid.toString()
      seen.add(key)
      if (keepBlocks) blocks.set(key, bytes)
      if (keepDirectories && cid.code === dagPb.code) {
        const node = dagPb.decode(bytes)
        if (node.Data != null && UnixFS.unmarshal(node.Data).isDirectory()) directories.set(key, node)
      }
      return cid
    },
    async get (cid) {
      const bytes = blocks.get(cid.toString())
      if (bytes == null) throw new Error(`block ${cid} was not ${keepBlocks ? 'written' : 'kept'}`)
      return bytes
    }
  }
}

/**
 * Every path below a directory, with its CID: what `ipfs add -r` prints as
 * `added <cid> <path>` lines. Built from the DAG itself (the importer does not
 * report directories it was handed as empty-directory candidates).
 */
function walkDirectory (store, cid, path, out) {
  const node = store.directories.get(cid)
  if (node == null) throw new Error(`${path} (${cid}) is not a directory block that was written`)
  if (UnixFS.unmarshal(node.Data).type !== 'directory') {
    throw new Error(`${path} is a ${UnixFS.unmarshal(node.Data).type}; only flat directories are handled`)
  }
  for (const link of node.Links) {
    const childPath = `${path}/${link.Name}`
    const child = link.Hash.toString()
    out.set(childPath, child)
    if (store.directories.has(child)) walkDirectory(store, child, childPath, out)
  }
  return out
}

export async function importOneFile (job, store = countingBlockstore()) {
  const spec = content(job.file, 'file')
  let result
  for await (const entry of importer([{ content: spec.bytes() }], store, importerOptions(job.profile))) {
    if (result != null) throw new Error('importer yielded more than one entry for a single file')
    result = entry
  }
  if (result == null) throw new Error('importer yielded nothing')
  return { cid: result.cid.toString(), size: spec.size, blocks: store.seen.size }
}

function checkPath (path) {
  if (typeof path !== 'string' || path === '' || path.startsWith('/') || path.endsWith('/') ||
      path.split('/').some(part => part === '' || part === '.' || part === '..')) {
    throw new Error(`bad entry path ${JSON.stringify(path)}`)
  }
  return path
}

export async function importTree (job, store = countingBlockstore({ keepDirectories: true })) {
  if (!Array.isArray(job.entries) || job.entries.length === 0) throw new Error('entries must be a non-empty list')
  const tops = new Set()
  const paths = job.entries.map(e => checkPath(e.path))
  if (new Set(paths).size !== paths.length) throw new Error('duplicate entry paths')
  const candidates = []
  job.entries.forEach((e, i) => {
    const path = paths[i]
    tops.add(path.split('/')[0])
    if (e.dir === true) {
      // Directories with entries below them are made from those entries, as
      // `ipfs add -r` makes them from the disk. Only empty ones are passed on:
      // the importer would replace a directory it has already filled if the
      // same path came again as a bare directory candidate.
      if (!paths.some(other => other.startsWith(path + '/'))) candidates.push({ path })
      return
    }
    if (paths.some(other => other.startsWith(path + '/'))) throw new Error(`${path} is a file and has entries below it`)
    candidates.push({ path, content: content(e, `entries[${i}] (${path})`).bytes() })
  })
  if (tops.size !== 1) throw new Error(`entries must share one top-level directory, got ${[...tops].join(', ')}`)
  const [rootPath] = tops
  if (job.entries.some(e => e.path === rootPath && e.dir !== true)) {
    throw new Error('the top-level entry must be a directory')
  }
  const yielded = new Map()
  for await (const entry of importer(candidates, store, importerOptions(job.profile))) {
    if (entry.path == null || yielded.has(entry.path)) throw new Error(`unexpected importer entry ${entry.path}`)
    yielded.set(entry.path, entry.cid.toString())
  }
  const root = yielded.get(rootPath)
  if (root == null) throw new Error(`importer did not yield the root ${rootPath}`)
  const added = walkDirectory(store, root, rootPath, new Map([[rootPath, root]]))
  // the DAG must hold every given path and agree with all the importer reported
  for (const path of paths) {
    if (!added.has(path)) throw new Error(`${path} is missing from the imported tree`)
  }
  for (const [path, cid] of yielded) {
    if (added.get(path) !== cid) throw new Error(`importer said ${path} = ${cid}, the DAG says ${added.get(path)}`)
  }
  const sorted = {}
  for (const key of [...added.keys()].sort()) sorted[key] = added.get(key)
  return { root, root_path: rootPath, paths: sorted, blocks: store.seen.size }
}

async function main (job) {
  if (job.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('./node_modules/ipfs-unixfs-importer/package.json', import.meta.url), 'utf8'))
    return { importer: pkg.version, node: process.versions.node }
  }
  if (job.sha256 != null) {
    // self-check: the sha256 of the generated content, to compare with content.py
    const h = createHash('sha256')
    for (const piece of content(job.sha256, 'sha256').bytes()) h.update(piece)
    return { sha256: h.digest('hex') }
  }
  if ((job.file == null) === (job.entries == null)) throw new Error('a job has exactly one of "file" and "entries"')
  return job.file != null ? importOneFile(job) : importTree(job)
}

/** True when `moduleUrl` is the script node was started with (not an import). */
export function isMain (moduleUrl) {
  if (process.argv[1] == null) return false
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl))
  } catch {
    return false
  }
}

/** Runs `job(parsed stdin)` and prints its JSON answer, or the error on stderr (exit 1). */
export function runScript (name, job) {
  Promise.resolve()
    .then(() => job(JSON.parse(readFileSync(0, 'utf8'))))
    .then(
      out => { process.stdout.write(JSON.stringify(out) + '\n') },
      err => { process.stderr.write(`${name}: ${err.stack ?? err}\n`); process.exit(1) }
    )
}

if (isMain(import.meta.url)) runScript('import.mjs', main)
