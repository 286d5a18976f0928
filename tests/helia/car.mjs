// Reference CARv1 reader and writer (@ipld/car, as used by Helia) for chorus's
// CAR interop tests. Needs Node >= 22 (tests/helia/setup.sh installs it).
//
// Reads ONE JSON job from stdin and writes ONE JSON result to stdout:
//
//   {"read": "<path to a .car>"}
//   -> {"version": 1, "roots": ["<cid>", ...],
//       "blocks": [{"cid": "<cid>", "size": <bytes>}, ...],   // in file order
//       "mismatches": [{"index": i, "cid": "<cid>", "reason": "..."}, ...]}
//   Streams the file through CarBlockIterator and checks that every block's
//   bytes hash (sha2-256) to the digest in its CID; blocks whose CID uses
//   another hash function are listed in `mismatches` as unverifiable. A file
//   @ipld/car cannot parse is an error (exit 1, message on stderr).
//
//   {"write": {"profile": "kubo-v0" | "v1-raw",
//              "file": {"size": N, "seed": "s"} | {"text": "..."}     (one file)
//              | "entries": [...]                     (a tree, as in import.mjs),
//              "out": "<path of the .car to create>"}}
//   -> {"root": "<cid>", "blocks": ["<cid>", ...], "bytes": <size of the CAR>}
//      (+ "paths" and "root_path" for a tree, as import.mjs answers)
//   Imports the content exactly as import.mjs does (same ipfs-unixfs-importer
//   options, same deterministic content), then writes a CARv1 with CarWriter
//   whose single root is the import's root and whose blocks are in the order
//   Kubo's `ipfs dag export` uses: depth-first pre-order from the root, the
//   links of each dag-pb node in order, each block once (the first time it is
//   reached). The walk is done here, independently of chorus's.
//
//   {"version": true} -> {"car": "5.x.y", "node": "22.x.y"}
//
// CIDs print as Kubo prints them: CIDv0 in base58btc, CIDv1 in base32.

import { createReadStream, createWriteStream, readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarBlockIterator, CarWriter } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { countingBlockstore, importOneFile, importTree, isMain, runScript } from './import.mjs'

function equalBytes (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

async function readCar (path) {
  if (typeof path !== 'string' || path === '') throw new Error('read: give the path of a .car file')
  const iterator = await CarBlockIterator.fromIterable(createReadStream(path))
  const roots = (await iterator.getRoots()).map(cid => cid.toString())
  const blocks = []
  const mismatches = []
  for await (const { cid, bytes } of iterator) {
    const index = blocks.length
    blocks.push({ cid: cid.toString(), size: bytes.length })
    if (cid.multihash.code !== sha256.code) {
      mismatches.push({ index, cid: cid.toString(), reason: `hash function 0x${cid.multihash.code.toString(16)} is not sha2-256; not verified` })
      continue
    }
    const digest = await sha256.digest(bytes)
    if (!equalBytes(digest.digest, cid.multihash.digest)) {
      mismatches.push({ index, cid: cid.toString(), reason: `bytes hash to ${CID.create(1, raw.code, digest)} (raw), not to the CID's digest` })
    }
  }
  return { version: iterator.version, roots, blocks, mismatches }
}

/**
 * Kubo's `ipfs dag export` order: depth-first pre-order, links in order, each
 * block once. Recursive on purpose (chorus's export uses an explicit stack).
 */
async function * preOrder (store, cid, seen = new Set()) {
  const key = cid.toString()
  if (seen.has(key)) return
  seen.add(key)
  const bytes = await store.get(cid)
  yield { cid, bytes }
  if (cid.code === dagPb.code) {
    for (const link of dagPb.decode(bytes).Links) yield * preOrder(store, link.Hash, seen)
  } else if (cid.code !== raw.code) {
    throw new Error(`${cid}: codec 0x${cid.code.toString(16)} is neither dag-pb nor raw`)
  }
}

async function writeCar (spec) {
  if (spec == null || typeof spec.out !== 'string' || spec.out === '') throw new Error('write: needs "out", the path of the CAR to create')
  if ((spec.file == null) === (spec.entries == null)) throw new Error('write: give exactly one of "file" and "entries"')
  const store = countingBlockstore({ keepDirectories: true, keepBlocks: true })
  const job = { profile: spec.profile, file: spec.file, entries: spec.entries }
  const imported = spec.file != null ? await importOneFile(job, store) : await importTree(job, store)
  const rootText = spec.file != null ? imported.cid : imported.root
  const root = CID.parse(rootText)

  const { writer, out } = CarWriter.create([root])
  const sink = pipeline(Readable.from(out), createWriteStream(spec.out))
  const order = []
  let failed = null
  try {
    for await (const block of preOrder(store, root)) {
      order.push(block.cid.toString())
      await writer.put(block)
    }
  } catch (err) {
    failed = err
  } finally {
    await writer.close()
  }
  await sink
  if (failed != null) throw failed
  if (order.length !== store.seen.size) {
    throw new Error(`the import wrote ${store.seen.size} distinct blocks but ${order.length} are reachable from ${rootText}`)
  }
  const result = { root: rootText, blocks: order }
  if (spec.entries != null) Object.assign(result, { root_path: imported.root_path, paths: imported.paths })
  return result
}

async function main (job) {
  if (job.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('./node_modules/@ipld/car/package.json', import.meta.url), 'utf8'))
    return { car: pkg.version, node: process.versions.node }
  }
  if ((job.read == null) === (job.write == null)) throw new Error('a job has exactly one of "read" and "write"')
  if (job.read != null) return readCar(job.read)
  const result = await writeCar(job.write)
  return { ...result, bytes: (await stat(job.write.out)).size }
}

if (isMain(import.meta.url)) runScript('car.mjs', main)
