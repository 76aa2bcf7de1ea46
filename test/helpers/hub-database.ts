import { join } from 'node:path';
import { openHubDatabase, type HubDatabase, type HubDialect } from '../../src/hub/db/open.js';
import { tempDir } from './paths.js';
import { startPostgres, type TestPostgres } from './postgres.js';

/**
 * Fresh hub databases of either dialect for a test file: SQLite files in a temp dir, or new databases on one
 * PostgreSQL server started on first use. `close()` in afterAll stops the server and removes the files.
 */
export class HubDatabases {
  private server: Promise<TestPostgres> | undefined;
  private readonly dir = tempDir('fleetlet-hubdb-');
  private count = 0;

  constructor(readonly dialect: HubDialect) {}

  /** Where a new database is: a SQLite file, or a postgres:// URL of a new empty database. */
  async fresh(): Promise<{ file: string; url?: string }> {
    this.count += 1;
    const file = join(this.dir.dir, `hub-${this.count}.db`);
    if (this.dialect === 'sqlite') return { file };
    this.server ??= startPostgres();
    return { file, url: await (await this.server).createDatabase(`hub_${process.pid}_${this.count}`) };
  }

  async open(where?: { file: string; url?: string }): Promise<HubDatabase> {
    return openHubDatabase(where ?? (await this.fresh()));
  }

  async close(): Promise<void> {
    if (this.server) await (await this.server).close();
    this.dir.cleanup();
  }
}
