/*
 * The JDK's two ZIP readers, as Java clients use them, for the test suite's reader matrix
 * (tests/zip_readers.py).
 *
 *   java ZipRead zipfile FILE    java.util.zip.ZipFile: the central directory, random access
 *   java ZipRead stream FILE     java.util.zip.ZipInputStream: local headers, front to back
 *   java ZipRead stream -        the same on standard input (a pipe: no seeking at all)
 *
 * Every entry is read to its end; its byte count and CRC-32 must match what the archive
 * declares (ZipInputStream also checks them itself). One line per entry on standard output:
 * the name's UTF-8 bytes in hex, the size, the CRC-32 and the SHA-256 of the bytes read, so
 * the caller compares them with the contents it expects. Any problem: a message on standard
 * error and exit status 1.
 */

import java.io.BufferedInputStream;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Enumeration;
import java.util.HexFormat;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipFile;
import java.util.zip.ZipInputStream;

public final class ZipRead {
    private static final HexFormat HEX = HexFormat.of();

    private ZipRead() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2 || !(args[0].equals("zipfile") || args[0].equals("stream"))) {
            System.err.println("usage: java ZipRead zipfile|stream FILE|-");
            System.exit(2);
        }
        PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
        try {
            if (args[0].equals("zipfile")) {
                readZipFile(args[1], out);
            } else {
                readStream(args[1], out);
            }
        } catch (IOException exception) {
            out.flush();
            System.err.println("ZipRead " + args[0] + ": " + exception);
            System.exit(1);
        }
        out.flush();
    }

    private static void readZipFile(String path, PrintStream out) throws IOException {
        try (ZipFile zip = new ZipFile(path, StandardCharsets.UTF_8)) {
            Enumeration<? extends ZipEntry> entries = zip.entries();
            while (entries.hasMoreElements()) {
                ZipEntry entry = entries.nextElement();
                try (InputStream data = zip.getInputStream(entry)) {
                    report(entry, data, out);
                }
            }
        }
    }

    private static void readStream(String path, PrintStream out) throws IOException {
        InputStream raw = path.equals("-") ? System.in : new FileInputStream(path);
        try (ZipInputStream zip =
                new ZipInputStream(new BufferedInputStream(raw, 1 << 16), StandardCharsets.UTF_8)) {
            ZipEntry entry;
            while ((entry = zip.getNextEntry()) != null) {
                report(entry, zip, out);
            }
        }
    }

    private static void report(ZipEntry entry, InputStream data, PrintStream out)
            throws IOException {
        CRC32 crc = new CRC32();
        MessageDigest sha256;
        try {
            sha256 = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException exception) {
            throw new IllegalStateException(exception);
        }
        byte[] buffer = new byte[1 << 16];
        long size = 0;
        for (int count; (count = data.read(buffer)) != -1; ) {
            crc.update(buffer, 0, count);
            sha256.update(buffer, 0, count);
            size += count;
        }
        // ZipInputStream knows an entry's size and CRC for sure only once it is read.
        if (entry.getSize() != size) {
            throw new ZipException(entry.getName() + ": " + size + " bytes, declared "
                    + entry.getSize());
        }
        if (entry.getCrc() != crc.getValue()) {
            throw new ZipException(entry.getName() + ": CRC-32 " + Long.toHexString(crc.getValue())
                    + ", declared " + Long.toHexString(entry.getCrc()));
        }
        out.printf("%s\t%d\t%08x\t%s%n",
                HEX.formatHex(entry.getName().getBytes(StandardCharsets.UTF_8)),
                size,
                crc.getValue(),
                HEX.formatHex(sha256.digest()));
    }
}
