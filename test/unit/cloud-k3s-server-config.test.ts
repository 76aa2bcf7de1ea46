import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/paths.js';

const SHIPPED = join(REPO_ROOT, 'packaging/cloud/k3s-server/config.yaml');

describe('the shipped agentless k3s server config', () => {
  const text = readFileSync(SHIPPED, 'utf8');
  const config = parse(text) as Record<string, unknown>;

  it('gives agents a token of their own (agent-token-file), apart from the server token', () => {
    expect(config['token-file']).toMatch(/^\/etc\/rancher\/k3s\//);
    expect(config['agent-token-file']).toMatch(/^\/etc\/rancher\/k3s\//);
    expect(config['agent-token-file']).not.toBe(config['token-file']);
  });

  it('puts no token itself in the file, and says how to make the files and per-device bootstrap tokens', () => {
    expect(config).not.toHaveProperty('token');
    expect(config).not.toHaveProperty('agent-token');
    expect(text).toContain(`openssl rand -hex 32 > ${String(config['agent-token-file'])}`);
    expect(text).toContain(`openssl rand -hex 32 > ${String(config['token-file'])}`);
    expect(text).toContain('k3s token create --ttl');
  });

  it('stays an agentless control plane', () => {
    expect(config['disable-agent']).toBe(true);
    expect(config['egress-selector-mode']).toBe('cluster');
  });
});
