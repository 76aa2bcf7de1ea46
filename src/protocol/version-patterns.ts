import { z } from 'zod';

/** A k3s release as its channel and GitHub name it: v1.36.3+k3s1. Also a path segment of release URLs. */
export const K3S_VERSION_PATTERN = /^v\d+\.\d+\.\d+\+k3s\d+$/;
export const K3sVersionSchema = z.string().regex(K3S_VERSION_PATTERN, { error: 'expected a k3s version like v1.36.3+k3s1' });

// SemVer 2.0.0 with an optional prerelease of up to 32 characters; no empty identifiers, so that it orders as SemVer.
export const FLEETLET_VERSION_PATTERN = /^\d+\.\d+\.\d+(?:-(?=[0-9A-Za-z.-]{1,32}$)[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
export const FleetletVersionSchema = z.string().regex(FLEETLET_VERSION_PATTERN, { error: 'expected a fleetlet version like 1.2.3' });
