import pkg from '../../package.json' with { type: 'json' };

export const FLEETLET_VERSION: string = pkg.version;
