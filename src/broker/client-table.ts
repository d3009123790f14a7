// Aedes 1.2 keeps its table of connected clients (`aedes.clients`, the one a
// takeover looks in, MQTT-3.1.4-2) by client id, while a client's close is
// asynchronous (it unsubscribes first, then unregisters "whatever holds its
// id"). So when a client with the same id connects while the previous one is
// still closing (a device reconnecting as its old connection drops):
//   - the old client's close unregisters the NEW client's entry; the next
//     CONNECT with that id then finds nobody to take over, and two live
//     sessions share one client id [MQTT-3.1.4-2];
//   - `connectedClients` drifts upwards for good;
//   - a client that closes while its CONNECT is still in the persistence steps
//     is registered anyway, as a dead entry.
// Found by the MQTT fuzz (issue 8). These wrappers make the table follow
// identities: an entry is removed only by its own client, a closed client
// never enters, and a holder is taken over (or, when closing, unregistered)
// before it is replaced.
import type { Aedes } from 'aedes';
import { clientTableOf, type TableClient } from './aedes-internals.js';

export function guardClientTable(aedes: Aedes): void {
  const table = clientTableOf(aedes);
  const finishRegister = table._finishRegisterClient.bind(table);
  const unregister = table.unregisterClient.bind(table);
  /** Clients in the table (counted in `connectedClients`). */
  const registered = new WeakSet<TableClient>();

  table._finishRegisterClient = (client) => {
    // Closed during its CONNECT: its close has already run and would never unregister it.
    if (client.closed) return;
    const holder = table.clients[client.id];
    if (holder !== undefined && holder !== client) {
      // A live holder (two CONNECTs racing): take it over first; its close unregisters it and
      // brings us back here. Its close sets `closed` at once, so this does not loop.
      if (!holder.closed) return table.registerClient(client);
      // A holder still closing would later unregister whatever holds the id by then: do it now.
      table.unregisterClient(holder);
    }
    registered.add(client);
    finishRegister(client);
  };

  table.unregisterClient = (client) => {
    // Aedes unregisters by id: only a client that is in the table leaves it.
    if (registered.delete(client)) unregister(client);
  };
}
