/**
 * A PKCS#10 certificate signing request (RFC 2986) for one ECDSA P-256 key and subject `CN=<name>`, in DER written
 * here: the request is four fixed fields, and Node has no writer for it. Leaving a general X.509 library out of the
 * agent keeps it small on a 512 MiB board. `sign` is the key's own signature (SHA-256, DER), so a key store that
 * keeps its key in hardware signs without handing it over.
 */
const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const OID_ECDSA_WITH_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
const VERSION_1 = Buffer.from([0x02, 0x01, 0x00]);
const NO_ATTRIBUTES = Buffer.from([0xa0, 0x00]);

export async function certificateRequestPem(
  commonName: string,
  publicKeySpki: Buffer,
  sign: (data: Buffer) => Buffer | Promise<Buffer>,
): Promise<string> {
  const subject = sequence(tagged(0x31, sequence(OID_COMMON_NAME, tagged(0x0c, Buffer.from(commonName, 'utf8')))));
  const info = sequence(VERSION_1, subject, publicKeySpki, NO_ATTRIBUTES);
  const signature = await sign(info);
  const request = sequence(info, sequence(OID_ECDSA_WITH_SHA256), tagged(0x03, Buffer.concat([Buffer.from([0x00]), signature])));
  const lines = request.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

function sequence(...parts: Buffer[]): Buffer {
  return tagged(0x30, Buffer.concat(parts));
}

/** One DER element: tag, definite length, content (the request is far below 64 KiB). */
function tagged(tag: number, content: Buffer): Buffer {
  const length = content.length;
  if (length > 0xffff) throw new RangeError('DER element too long for a certificate request');
  const header = length < 0x80 ? [tag, length] : length < 0x100 ? [tag, 0x81, length] : [tag, 0x82, length >> 8, length & 0xff];
  return Buffer.concat([Buffer.from(header), content]);
}
