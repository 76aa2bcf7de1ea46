import mqtt, { type IClientOptions } from 'mqtt';
import type { Logger } from '../../lib/logger.js';
import { brokerEndpoint } from '../../protocol/broker-url.js';

/**
 * Ends a revoked device's open broker connection. mosquitto 2.0 rereads its CRL on SIGHUP but keeps connections that
 * are already open (measured with 2.0.11), so the hub connects, on its own operator listener, with the device's
 * client id (on the device listener that is the device id): the broker hands the id over and drops the device, whose
 * reconnection then meets the new CRL. The delay gives the broker time to reread the CRL first.
 */
export class RevokedConnectionCloser {
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly options: { brokerUrl: string; base: IClientOptions; delaySeconds: number; logger: Logger },
  ) {}

  /** Takes over the device's client id after the delay; failures are logged, the revocation stands either way. */
  schedule(deviceId: string): void {
    if (this.options.delaySeconds === 0) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.takeOver(deviceId).catch((err: unknown) =>
        this.options.logger.warn({ err, deviceId }, 'could not end the revoked device\'s broker connection; it ends when the device disconnects'),
      );
    }, this.options.delaySeconds * 1000);
    timer.unref();
    this.timers.add(timer);
  }

  async takeOver(deviceId: string): Promise<void> {
    const client = await mqtt.connectAsync({
      ...brokerEndpoint(this.options.brokerUrl),
      ...this.options.base,
      clientId: deviceId,
      // A clean session also drops what the broker queued for the revoked device.
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      protocolVersion: 4,
    });
    await client.endAsync();
    this.options.logger.info({ deviceId }, 'ended the revoked device\'s broker connection');
  }

  stop(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
