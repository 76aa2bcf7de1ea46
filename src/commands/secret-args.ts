import type { SealBinding, SealedSecret } from '../protocol/sealed-secret.js';

/** Opens secret arguments sealed to this device (identity/seal-key.ts): the commands part never holds the key itself. */
export interface SecretOpener {
  /** The plaintext; throws SealedSecretError when the value was not sealed to this device for this command. */
  open(sealed: SealedSecret, binding: SealBinding): string;
}
