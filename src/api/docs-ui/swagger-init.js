/* global SwaggerUIBundle -- loaded by the page just before this file */
// The page is /docs/: the document is /openapi.json, relative so that it holds behind a path prefix too.
globalThis.ui = SwaggerUIBundle({
  url: '../openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  // No call to swagger.io's validator: nothing leaves this origin.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
});
