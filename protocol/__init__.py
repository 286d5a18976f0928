"""Pure protocol code: CIDs, dag-pb, UnixFS, CAR and wire/entry formats.

Nothing here touches a socket, a file or a clock: bytes in, values out, so every
rule can be tested and audited on its own and driven by any I/O layer.
"""
