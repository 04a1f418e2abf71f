// yauzl, the ZIP reader Node clients use, for the test suite's reader matrix
// (tests/zip_readers.py). yauzl reads the central directory and needs random access: a file.
//
//   node read_zip.js FILE
//
// Every entry is read to its end; yauzl checks its byte count, and the CRC-32 computed here
// must match the declared one (yauzl does not check it). One line per entry on standard
// output: the name's UTF-8 bytes in hex, the size, the CRC-32 and the SHA-256 of the bytes
// read, so the caller compares them with the contents it expects. Any problem: a message on
// standard error and exit status 1.
"use strict";

const crypto = require("node:crypto");
const zlib = require("node:zlib");
const yauzl = require("yauzl");

// zlib.crc32 arrived in Node 20.15 / 22.2; older Node (Debian's) computes it here.
const CRC_TABLE = Array.from({ length: 256 }, (_, byte) => {
  let value = byte;
  for (let bit = 0; bit < 8; bit++) {
    value = value & 1 ? 0xedb88320 ^ (value >>> 1) : value >>> 1;
  }
  return value >>> 0;
});

function crc32(chunk, previous) {
  if (typeof zlib.crc32 === "function") {
    return zlib.crc32(chunk, previous);
  }
  let value = ~previous >>> 0;
  for (const byte of chunk) {
    value = CRC_TABLE[(value ^ byte) & 0xff] ^ (value >>> 8);
  }
  return ~value >>> 0;
}

function fail(error) {
  process.stderr.write(`read_zip.js: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
}

function readEntry(zip, entry, done) {
  zip.openReadStream(entry, (error, stream) => {
    if (error) {
      return fail(error);
    }
    const sha256 = crypto.createHash("sha256");
    let crc = 0;
    let size = 0;
    stream.on("data", (chunk) => {
      sha256.update(chunk);
      crc = crc32(chunk, crc);
      size += chunk.length;
    });
    stream.on("error", fail);
    stream.on("end", () => {
      if (size !== entry.uncompressedSize) {
        return fail(`${entry.fileName}: ${size} bytes, declared ${entry.uncompressedSize}`);
      }
      if (crc !== entry.crc32) {
        return fail(`${entry.fileName}: CRC-32 ${crc.toString(16)}, declared ${entry.crc32.toString(16)}`);
      }
      const name = Buffer.from(entry.fileName, "utf8").toString("hex");
      const crcHex = crc.toString(16).padStart(8, "0");
      process.stdout.write(`${name}\t${size}\t${crcHex}\t${sha256.digest("hex")}\n`);
      done();
    });
  });
}

function main() {
  if (process.argv.length !== 3) {
    process.stderr.write("usage: node read_zip.js FILE\n");
    process.exit(2);
  }
  yauzl.open(process.argv[2], { lazyEntries: true, strictFileNames: true }, (error, zip) => {
    if (error) {
      return fail(error);
    }
    let seen = 0;
    zip.on("error", fail);
    zip.on("entry", (entry) => {
      seen += 1;
      readEntry(zip, entry, () => zip.readEntry());
    });
    zip.on("end", () => {
      if (seen !== zip.entryCount) {
        fail(`${seen} entries read, the directory declares ${zip.entryCount}`);
      }
    });
    zip.readEntry();
  });
}

main();
