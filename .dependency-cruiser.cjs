// The import rules of src/: README.md's "How it works" drawing as a check (`npm test` runs it first).
//
// Each tier may import the tiers below it, never one above it, and never a sibling folder of its own tier
// (siblings are independent: a new edge between them means deciding which one sits lower). Type-only
// imports count: they couple the modules as much as value imports do. Nothing is exempt.

/** Top to bottom; each folder with the reason it sits where it does. */
const TIERS = [
  ['cli'], // flag parsing; runs one command
  ['demo', 'bench'], // programs the CLI runs: the demo drives the service, the benchmark the trainer
  ['service'], // the RPC handlers (gRPC, Connect): parse a request, call the layers below, map the result
  ['web'], // the web port's HTTP server (Connect, gRPC-Web, the dashboard's files, CORS); the routes come from service
  ['runner'], // the job queue: one process per job, its events written to the store and the metrics
  ['store', 'telemetry'], // SQLite jobs, events, checkpoints; OpenTelemetry: both record what the trainer emits
  ['trainer'], // the loop, checkpoints, receipt; its probes score with eval
  ['eval'], // scoring, drift figures and token classes, generation: on compiled graphs
  ['graph'], // the ONNX compiler: ops, autodiff, the train/score/generate steps, checkpoint → graph parameters
  ['runtime', 'model', 'policy'], // onnxruntime sessions; Hugging Face checkpoints; which tensors train
  ['data'], // tokenizer, chat template, JSONL datasets, batches
  ['util'], // errors, seeded random numbers, workers
];

/** Generated protobuf code and the RPC libraries belong to the wire: the layers below know nothing of them. */
const WIRE = ['service', 'web', 'cli', 'demo'];

const KNOWN = [...TIERS.flat(), 'gen'];
const folders = (names) => `^src/(${names.join('|')})/`;

const layerRules = TIERS.flatMap((tier, i) => tier.map((name) => [name, [...TIERS.slice(0, i).flat(), ...tier.filter((n) => n !== name)]]))
  .filter(([, forbidden]) => forbidden.length > 0)
  .map(([name, forbidden]) => ({
    name: `layer-${name}`,
    comment: `src/${name} may import only the tiers below it (TIERS in .dependency-cruiser.cjs): not ${forbidden.join(', ')}`,
    severity: 'error',
    from: { path: `^src/${name}/` },
    to: { path: folders(forbidden) },
  }));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle makes two modules one: neither can be understood, tested or moved without the other.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'gen-at-the-edge',
      comment: `Only ${WIRE.join(', ')} speak protobuf; the domain layers take and return plain TypeScript.`,
      severity: 'error',
      from: { path: '^src/', pathNot: folders([...WIRE, 'gen']) },
      to: { path: '^src/gen/' },
    },
    {
      name: 'grpc-at-the-edge',
      comment: `Only ${WIRE.join(', ')} (and the generated code) use the gRPC, Connect and protobuf libraries.`,
      severity: 'error',
      from: { path: '^src/', pathNot: folders([...WIRE, 'gen']) },
      to: { path: '(^|/)node_modules/(@grpc/|grpc-health-check/|@connectrpc/|@bufbuild/)' },
    },
    {
      name: 'folder-without-tier',
      comment: 'Every folder of src/ has a place in TIERS (.dependency-cruiser.cjs): add a new one where it belongs.',
      severity: 'error',
      from: { path: '^src/', pathNot: folders(KNOWN) },
      to: {},
    },
    {
      name: 'to-folder-without-tier',
      comment: 'Every folder of src/ has a place in TIERS (.dependency-cruiser.cjs): add a new one where it belongs.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/', pathNot: folders(KNOWN) },
    },
    {
      name: 'resolvable',
      comment: 'An import the check cannot resolve escapes every rule above; keeps the check itself honest.',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-dependency',
      comment: 'src/ ships in the package; a devDependency is absent from a user\'s install.',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    // the generated code is a leaf: its own imports are the protobuf runtime's business
    doNotFollow: { path: ['node_modules', '^src/gen/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    cache: false,
  },
};
