import { describe, expect, it } from 'vitest';
import { brokerEndpoint, isPlaintextBrokerUrl, isTlsBrokerUrl } from '../../src/protocol/broker-url.js';

describe('broker URL', () => {
  it('gives MQTT.js the endpoint of a URL, with the scheme default port when none is given', () => {
    expect(brokerEndpoint('mqtts://hub.example.com')).toEqual({ protocol: 'mqtts', hostname: 'hub.example.com', port: 8883 });
    expect(brokerEndpoint('mqtt://10.0.0.5')).toEqual({ protocol: 'mqtt', hostname: '10.0.0.5', port: 1883 });
    expect(brokerEndpoint('MQTTS://hub.example.com:9883/')).toEqual({ protocol: 'mqtts', hostname: 'hub.example.com', port: 9883 });
  });

  it('hands over an IPv6 literal without its brackets, as a socket wants it', () => {
    expect(brokerEndpoint('mqtt://[::1]:18830')).toEqual({ protocol: 'mqtt', hostname: '::1', port: 18830 });
  });

  it('keeps user info given in the URL, decoded', () => {
    expect(brokerEndpoint('mqtt://some%20one:p%40ss@127.0.0.1:1883')).toMatchObject({ username: 'some one', password: 'p@ss' });
    expect(brokerEndpoint('mqtt://127.0.0.1:1883')).not.toHaveProperty('username');
  });

  it('refuses what is not an mqtt:// or mqtts:// URL', () => {
    expect(() => brokerEndpoint('http://127.0.0.1')).toThrow(/mqtt:\/\/ or mqtts:\/\//);
    expect(() => brokerEndpoint('127.0.0.1:1883')).toThrow(TypeError);
  });

  it('tells TLS from plaintext by the parsed scheme', () => {
    expect([isTlsBrokerUrl('MQTTS://h'), isPlaintextBrokerUrl('MQTTS://h'), isPlaintextBrokerUrl('mqtt://h')]).toEqual([true, false, true]);
  });
});
