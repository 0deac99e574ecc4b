// What the page keeps in this browser: the autosaved run (IndexedDB: the checkpoint's bytes,
// the loss curve and when it was saved) and the chosen backend (localStorage).

const DB = "consistency-studio";
const STORE = "runs";
const ENGINE_KEY = "consistency.engine";

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbDo(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

// `{ bytes, losses, savedAt }`, or undefined.
export const savedRun = () => dbDo("readonly", (s) => s.get("autosave"));
export const saveRun = (run) => dbDo("readwrite", (s) => s.put(run, "autosave"));
export const forgetRun = () => dbDo("readwrite", (s) => s.delete("autosave"));

export const savedEngineChoice = () => localStorage.getItem(ENGINE_KEY);
export const saveEngineChoice = (choice) => localStorage.setItem(ENGINE_KEY, choice);
