import { HubSection, type HubConfig } from '../../src/config/hub-schema.js';

/** The hub section with every default, as a config without a `hub:` key gives it. */
export const HubConfigDefaults: HubConfig = HubSection.parse(undefined);
