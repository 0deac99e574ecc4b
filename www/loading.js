// Trunk's initializer hook (data-initializer in index.html): the WebAssembly download's progress
// goes to the page's first progress bar, and a failed load says so instead of leaving the page
// waiting.
export default function initializer() {
  const bar = () => document.getElementById("load-wasm");
  return {
    onProgress: ({ current, total }) => {
      const b = bar();
      if (b && total > 0) b.value = current / total;
    },
    onSuccess: () => {
      const b = bar();
      if (b) b.value = 1;
    },
    onFailure: (error) => {
      const status = document.getElementById("status");
      if (status) {
        status.dataset.state = "error";
        status.textContent = `The WebAssembly module did not load: ${error instanceof Error ? error.message : error}`;
      }
    },
  };
}
