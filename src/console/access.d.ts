// Types of access.js for the tests that hold it to the server's rules (the console itself is plain browser JS).
export const STANDARD: 0;
export const MASTER: 1;
export const ACL: 2;
interface ConsoleToken {
  id?: number;
  access?: { type: number; acl?: readonly object[] };
}
export function canRest(token: ConsoleToken, method: string, path: string): boolean;
export function mqttEntries(token: ConsoleToken, action: string): object[];
export function canSubscribeAnything(token: ConsoleToken): boolean;
export function canWatchEvents(token: ConsoleToken): boolean;
export function accessName(type: number | undefined): string;
export function filterProblem(filter: unknown): string | null;
