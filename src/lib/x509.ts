// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API before it loads:
// import the library only through this module, which installs that first (ES modules evaluate imports in order).
import 'reflect-metadata';

export * from '@peculiar/x509';
