import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { stringify } from 'yaml';
import { startCli } from './cli.js';
import { waitFor } from './wait.js';
import { TOPIC_ROOT } from '../fixtures/hub-messages.js';

/**
 * `fleetlet hub` run from the bundle as a real process (the same code the binary embeds), so a test can SIGKILL it
 * mid-commit. Its config file names the broker and the database; `started()` resolves once every connection of it
 * has subscribed, which is when messages published to its session reach it.
 */
export interface HubProcessOptions {
  dir: string;
  brokerUrl: string;
  database: { file: string; url?: string };
  replicaId: string;
  /**
   * Default: one group per replica. mosquitto hands a shared subscription's messages round-robin also to the
   * sessions of members that are offline, so a group shared with another test's stopped hub would lose half to it.
   */
  shareGroup?: string;
  connections?: number;
  /** Merged into the `broker:` section (TLS files for a broker that wants a client certificate). */
  brokerExtra?: Record<string, unknown>;
  extra?: Record<string, unknown>;
}

export function writeHubConfig(options: HubProcessOptions): string {
  const file = join(options.dir, `hub-${options.replicaId}.yaml`);
  writeFileSync(
    file,
    stringify({
      broker: { url: options.brokerUrl, allowPlaintext: true, topicRoot: TOPIC_ROOT, ...options.brokerExtra },
      hub: {
        replicaId: options.replicaId,
        shareGroup: options.shareGroup ?? `test-${options.replicaId}`,
        connections: options.connections ?? 4,
        database: options.database.url ? { url: options.database.url, file: options.database.file } : { file: options.database.file },
        // A free port each: replicas of one test run side by side.
        http: { listen: '127.0.0.1:0' },
        ...options.extra,
      },
      log: { level: 'info' },
    }),
  );
  return file;
}

export interface HubProcess {
  pid: number;
  output(): string;
  started(): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export function startHubProcess(configFile: string): HubProcess {
  const { child, output, exited } = startCli(['hub', '--config', configFile]);
  return {
    pid: child.pid!,
    output,
    started: () => waitFor(() => output().includes('hub subscribed: ingesting') || child.exitCode !== null, 'the hub to subscribe', 30_000).then(() => {
      if (child.exitCode !== null) throw new Error(`the hub exited with ${child.exitCode}: ${output()}`);
    }),
    kill: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    exited,
  };
}

/** A device-side publisher: QoS 1, a bounded window in flight, as the device outbox drains. */
export async function connectPublisher(brokerUrl: string, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(brokerUrl, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 200 });
}

export async function publishAll(client: MqttClient, messages: { topic: string; payload: unknown; retain?: boolean }[], window = 100): Promise<void> {
  for (let i = 0; i < messages.length; i += window) {
    await Promise.all(
      messages.slice(i, i + window).map((m) =>
        client.publishAsync(m.topic, Buffer.isBuffer(m.payload) ? m.payload : JSON.stringify(m.payload), { qos: 1, retain: m.retain ?? false }),
      ),
    );
  }
}
