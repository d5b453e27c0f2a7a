// Swagger UI on the API's OpenAPI document (its URL comes from the script tag, so no inline script is needed).
(function () {
  var url = document.currentScript.getAttribute("data-spec-url");
  window.SwaggerUIBundle({ url: url, dom_id: "#swagger-ui", deepLinking: true });
})();
