// Builds the component the way `gradio cc build` lays it out (component/index.js, the Svelte runtime
// the page mounts it with, style.css), straight into ../templates, without packaging a wheel.
// Run through `make frontend` (scripts/build_frontend.sh), which also records the sources' hash.
import { svelte, vitePreprocess } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";
import { defineConfig } from "vite";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

// Vite keeps an ES library's whitespace; the page loads this file whole, so squeeze it.
const minifyChunks = {
	name: "minify-chunks",
	enforce: "post",
	async generateBundle(_, bundle) {
		for (const chunk of Object.values(bundle)) {
			if (chunk.type === "chunk") chunk.code = (await transform(chunk.code, { minify: true, format: "esm" })).code;
		}
	}
};

export default defineConfig({
	plugins: [minifyChunks, svelte({ preprocess: vitePreprocess({ script: true }), compilerOptions: { discloseVersion: false } })],
	build: {
		outDir: here("../templates/component"),
		emptyOutDir: true,
		minify: true,
		lib: {
			entry: { index: here("Index.svelte"), svelte_runtime_entry: here("src/svelte_runtime.js") },
			formats: ["es"]
		},
		rollupOptions: {
			output: {
				entryFileNames: "[name].js",
				chunkFileNames: "[name].js",
				assetFileNames: (asset) => (asset.names[0]?.endsWith(".css") ? "style.css" : "[name][extname]")
			}
		}
	}
});
